"""A real `voiceforge serve` subprocess on 127.0.0.1, with its own data folder.

`server` is one server for a whole test module (defaults, without the web UI). `start_server(**env)`
starts another with settings given as VOICEFORGE_* environment variables (VOICEFORGE_UI="1" for
the UI); it stops at the end of the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

STARTUP_S = 90.0


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 180.0), **kwargs)  # type: ignore[arg-type]

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(home: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Server:
    """Start `voiceforge serve` in ``home`` and wait until /readyz answers 200."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "VOICEFORGE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    environ.pop("HOST", None)
    environ["VOICEFORGE_UI"] = "0"  # Gradio adds seconds to each start; tests of the UI turn it on
    environ["VOICEFORGE_WARM_CLONING"] = "0"  # ~15 s of CPU per start; the voice tests turn it on
    environ["VOICEFORGE_LEARN_VOICES"] = "0"  # minutes of CPU per voice; test_learning.py turns it on
    environ.update(env or {})
    log_path = home / "stdout.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "voiceforge", "serve", *args],
            cwd=home,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", home, process, log_path)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready after {STARTUP_S} s:\n{server.log[-3000:]}")


def cosyvoice_standin(home: Path) -> dict[str, str]:
    """Settings for a server whose ``cosyvoice`` engine is the stand-in package in tests/standins
    (the real CosyVoice3 needs its weights and a GPU): a model folder in ``home``, the import path."""
    model_dir = home / "Fun-CosyVoice3-0.5B"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "cosyvoice3.yaml").write_text("# stand-in model directory\n")
    standins = str(Path(__file__).resolve().parents[1] / "standins")
    path = os.pathsep.join(filter(None, [standins, os.environ.get("PYTHONPATH")]))
    return {"VOICEFORGE_COSYVOICE_MODEL_DIR": str(model_dir), "PYTHONPATH": path}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(home: Path | None = None, args: tuple[str, ...] = (), **env: str) -> Server:
        srv = launch(home or tmp_path / f"server{len(started)}", env, args)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
