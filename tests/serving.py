"""`minigpt serve` started by a test: a subprocess on a free localhost port, ready once /health answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import REPO

START_TIMEOUT = 120  # seconds: importing torch on a busy 2-core machine is slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A running `python -m minigpt serve`, this checkout's code; `stop()` ends it."""

    def __init__(self, ckpt_path: Path | str, *options: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"minigpt-serve-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "minigpt",
            "serve",
            f"--ckpt_path={ckpt_path}",
            f"--port={self.port}",
            *options,
        ]
        # One torch thread: a tiny model gains nothing from two, and on a busy machine they spin.
        environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        self._wait_until_healthy()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"minigpt serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # polling interval, not synchronisation: /health decides
        self.stop()
        raise RuntimeError(f"minigpt serve did not answer /health within {START_TIMEOUT} s:\n{self.output()}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def wait_for(self, condition, timeout: float = 30.0) -> dict:
        """Poll /health until `condition(health)` holds; the last health seen."""
        deadline = time.monotonic() + timeout
        health = self.health()
        while not condition(health):
            if time.monotonic() > deadline:
                raise AssertionError(f"/health never met the condition within {timeout} s; last: {health}")
            time.sleep(0.05)
            health = self.health()
        return health

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
