"""Settings, read from the environment (prefix ``VOICEFORGE_``) or passed explicitly.

Built by the entrypoint (CLI, app factory) and handed down; nothing reads it at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEFORGE_", extra="ignore")

    engine: str = "kokoro"
    # Another Kokoro-82M ONNX export (e.g. the official fp32 kokoro-v1.0.onnx) and its voices
    # (.npz such as voices-v1.0.bin); unset: the int8 model and five voices that come with pip.
    kokoro_model: Path | None = None
    kokoro_voices: Path | None = None
    kokoro_vocab: Path | None = None
    default_voice: str | None = None
    # int8 is the shipped model. fp32 rebuilds it with float weights (cached, ~325 MB): slower on
    # CPUs with AVX-512 VNNI (measured), possibly faster on CPUs whose int8 kernels are slow.
    kokoro_precision: Literal["int8", "fp32"] = "int8"
    threads: int = Field(default=0, ge=0, description="onnxruntime threads per model run; 0 = auto")
    parallel: int = Field(default=0, ge=0, description="sentences synthesised at once; 0 = auto")
    data_dir: Path = Path("data")  # voice library: data/voiceforge.db and data/voices/<id>/
    database_url: str | None = None  # default sqlite:///<data_dir>/voiceforge.db
    cache_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("voiceforge")))
    whisper_model: Path | None = None  # a CTranslate2 Whisper directory; unset: the bundled base model
