"""The one runner of components as real processes (``python -m webhookmaster <component>``,
from the components registry) for tests that kill, restart or rebalance them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support.env import clean_env
from tests.support.ports import free_port
from tests.support.waiting import eventually
from webhookmaster.components import BY_NAME
from webhookmaster.settings import PROJECT_ROOT, Settings, to_env


class ComponentProcess:
    """One component process with its own HTTP port (health, readiness, metrics) and a log file
    (stdout and stderr). ``env`` adds to or overrides the settings' environment."""

    def __init__(self, name: str, settings: Settings, log: Path, **env: str) -> None:
        self.name = name
        self.component = BY_NAME[name]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(**{**to_env(settings), self.component.port_env: str(self.port)})
        self.env.update(env)
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ComponentProcess:
        with open(self.log_path, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.component.argv(),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=PROJECT_ROOT,
            )
        return self

    @property
    def running(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of ``GET path`` on the component's port (0 when nothing answers)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until /readyz answers 200; fails at once (with the log) when the process exits."""

        def ready_or_exited() -> bool:
            if self.running.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.running.returncode}:\n{self.log()}")
            return self.ready()

        if not await eventually(lambda: asyncio.to_thread(ready_or_exited), timeout=timeout):
            raise AssertionError(f"{self.name} not ready:\n{self.log()}")

    async def wait_not_ready(self, timeout: float = 30) -> None:
        async def not_ready() -> bool:
            return not await asyncio.to_thread(self.ready)

        if not await eventually(not_ready, timeout=timeout):
            raise AssertionError(f"{self.name} still ready:\n{self.log()}")

    def metric(self, name: str) -> float:
        """Sum of every sample of metric ``name`` (all labels) on the component's /metrics."""
        status, text = self.get("/metrics")
        assert status == 200, f"{self.name} /metrics answered {status}"
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, value = line.rsplit(" ", 1)
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def log(self) -> str:
        """The end of the process's log."""
        return self.log_path.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        self.running.send_signal(signal.SIGKILL)
        self.running.wait(10)

    async def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (unless it has exited) and its exit code; one that ignores SIGTERM for
        ``timeout`` is killed and fails the test."""
        proc = self.running
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.log()}") from None

    def ensure_stopped(self) -> None:
        """Kill the process if a failed test left it running."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def start_projector(settings: Settings, log: Path, **env: str) -> ComponentProcess:
    """``webhookmaster projector`` started, batching briefly (0.05 s) unless ``env`` says."""
    batching = {"WM_PROJECTOR_BATCH_WAIT": "0.05", **env}
    return ComponentProcess("projector", settings, log, **batching).start()


def run_cli(
    env: Mapping[str, str], *args: str, timeout: float = 240
) -> subprocess.CompletedProcess:
    """``webhookmaster <args>`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "webhookmaster", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def run_bounded(
    *args: str, timeout: float, cwd: Path | None = None, merge_stderr: bool = False
) -> tuple[int, bytes, bytes]:
    """Run ``args`` to its end: exit code, standard output and error (the error folded into
    the output with ``merge_stderr``). Past ``timeout`` it is killed and TimeoutError raised."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err or b""
