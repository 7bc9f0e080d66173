"""voiceforge: voice-cloning text-to-speech in the CosyVoice3 family, with an embedded CPU engine."""

__version__ = "0.1.0"
