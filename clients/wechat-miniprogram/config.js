// Where the voiceforge server is. It must be an HTTPS domain listed in the mini-program's
// "request" and "downloadFile" legal domains (README.md).
module.exports = {
  BASE_URL: "https://tts.example.com",
  MAX_RECORD_MS: 15000,
  MIN_RECORD_MS: 3000,
};
