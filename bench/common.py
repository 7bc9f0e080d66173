"""What the benchmarks share: a real `voiceforge serve` subprocess on loopback, measured by psutil.

Each bench script runs as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they
``from common import Server``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil


class Server:
    def __init__(self, home: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        environ = {**os.environ, "HF_HUB_OFFLINE": "1", "VOICEFORGE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        environ.pop("HOST", None)
        environ["VOICEFORGE_WARM_CLONING"] = "0"  # no background warm-up in the measured minutes
        environ.update(env or {})
        self.home = home
        self.log = home / "stdout.log"
        with self.log.open("ab") as out:  # a file, as in production: a pipe nobody drains would stall it
            self.process = subprocess.Popen(
                [sys.executable, "-m", "voiceforge", "serve", *args],
                cwd=home,
                env=environ,
                stdout=out,
                stderr=out,
            )
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError("server not ready after 180 s")

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mb(self) -> tuple[float, float]:
        """Resident memory now and at its peak (VmHWM), MB."""
        now = self.ps.memory_info().rss / 2**20
        peak = now
        status = Path(f"/proc/{self.process.pid}/status")
        if status.is_file():
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            peak = int(match.group(1)) / 1024 if match else now
        return round(now, 1), round(peak, 1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
