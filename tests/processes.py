"""Components run as real processes (``python -m webhookmaster <component>``) for tests
that kill, restart or rebalance them."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import clean_env
from webhookmaster.components import BY_NAME
from webhookmaster.settings import PROJECT_ROOT, Settings, to_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Component:
    """One component process with its own HTTP port and a log file."""

    def __init__(self, name: str, settings: Settings, log_dir: Path) -> None:
        self.name = name
        self.component = BY_NAME[name]
        self.port = free_port()
        self.env = clean_env(**{**to_env(settings), self.component.port_env: str(self.port)})
        self.log = log_dir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Component:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.component.argv(),
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        out.close()
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except OSError:
            return 0, ""

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (await asyncio.to_thread(self.get, "/readyz"))[0] != 200:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.proc.returncode}:\n" + self.log.read_text()[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready:\n" + self.log.read_text()[-3000:])
            await asyncio.sleep(0.1)

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` on the component's /metrics."""
        _, text = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
