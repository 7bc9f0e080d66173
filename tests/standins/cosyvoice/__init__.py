"""Stand-in for the upstream ``cosyvoice`` package (FunAudioLLM/CosyVoice) in voiceforge's tests.

Not CosyVoice: the CosyVoice3 weights cannot be had here. See ``cosyvoice.cli.cosyvoice``.
"""
