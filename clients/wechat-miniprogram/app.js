// voiceforge WeChat mini-program sample: see README.md (server domain, API key).
App({});
