"""The embedded CPU engine: Kokoro-82M on onnxruntime, with everything only it uses.

- ``engine``: synthesis (``KokoroEngine``); ``model``: the bundled weights and voice packs;
  ``dequantize``: the fp32 graph that learning differentiates.
- ``enroll``, ``convert``, ``align``: the fast enrollment (stock voice choice + WORLD conversion).
- ``learn/``: learned enrollment by gradient descent through the fp32 graph (needs torch).
"""

from voiceforge.engines.kokoro.engine import KokoroEngine

__all__ = ["KokoroEngine"]
