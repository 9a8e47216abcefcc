"""The stack's pid files name the process they started, and no other: a pid reused by another
process after a crash must not be signalled by ``stack down`` (a CI broker was stopped by a
neighbouring stack's stale pid file)."""

from __future__ import annotations

import sys
from pathlib import Path

from devstack import processes


def test_a_pid_file_names_its_process_only_while_the_start_time_matches(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = processes.start(argv, tmp_path / "sleeper.log", pid_file)
    try:
        assert processes.read_pid(pid_file) == pid
        recorded_pid, started = pid_file.read_text().split()
        assert int(recorded_pid) == pid and started.isdigit()
        pid_file.write_text(f"{pid} {int(started) + 1}\n")  # as if the pid had been reused
        assert processes.read_pid(pid_file) is None
        assert processes.stop(pid_file) is False  # nothing signalled
        pid_file.write_text(f"{pid}\n")  # a file of an earlier version: pid only
        assert processes.read_pid(pid_file) == pid
        pid_file.write_text(f"{pid}\n{tmp_path}\n1795924321\n")  # as postmaster.pid: lines
        assert processes.read_pid(pid_file) == pid
    finally:
        pid_file.write_text(f"{pid}\n")
        assert processes.stop(pid_file, timeout=10)
    assert processes.read_pid(pid_file) is None
