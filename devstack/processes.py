"""Background processes of the stack: start with a pid file and a log, tell whether they run,
stop exactly what was started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from devstack.errors import StackError


def state_paths(state_dir: Path, service: str, **files: str) -> dict[str, Path]:
    """A service's folder under the stack's state folder (``base``) and its ``files`` in it."""
    base = state_dir / service
    return {"base": base, **{name: base / file for name, file in files.items()}}


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process still runs, else None. A file that
    also records the process's start time (as :func:`start` writes it) names a process only
    while that time matches: once the pid is reused by another process, it names none (a
    stale file must never make ``stack down`` signal a stranger)."""
    try:  # the first line only: PostgreSQL's postmaster.pid holds more lines after the pid
        words = pid_file.read_text().splitlines()[0].split()
        pid = int(words[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid):
        return None
    if len(words) > 1 and words[1] != _start_time(pid):
        return None
    return pid


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie has exited; its parent just has not reaped it
    return True


def start(
    argv: Sequence[str],
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` detached from this process; its output goes to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def stop(pid_file: Path, timeout: float = 30.0) -> bool:
    """SIGTERM the recorded process, SIGKILL it after ``timeout``; True if one was running."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, what: str, variable: str) -> None:
    if not port_free(port):
        raise StackError(
            f"port {port} ({what}) is already in use by another process: free it or set {variable}"
        )


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def wait_until(
    check: Callable[[], object],
    timeout: float,
    interval: float = 0.2,
    alive: Callable[[], object] | None = None,
) -> bool:
    """Poll ``check()`` until it is true or ``timeout`` passes; stop early when ``alive()`` is
    false. Returns the last result of ``check``."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if (alive is not None and not alive()) or time.monotonic() >= deadline:
            return False
        time.sleep(interval)
