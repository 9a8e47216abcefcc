"""A test fails when it leaves a Kafka client (a librdkafka handle) running after its teardown.

librdkafka's threads are native, invisible to ``threading.enumerate()``; each handle has one
thread named ``rdk:main`` (Linux shows it in /proc/self/task/*/comm). A client left open keeps
its broker threads alive and, once its broker is gone, prints connection failures for the rest
of the session. Elsewhere than Linux the check counts nothing and so never fails.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TASKS = Path("/proc/self/task")
SETTLE_S = 5.0  # a client closed on another thread may take a moment to finish its destroy


def live_kafka_clients() -> int:
    """How many librdkafka handles this process has (its threads named ``rdk:main``)."""
    count = 0
    for comm in TASKS.glob("*/comm") if TASKS.is_dir() else ():
        try:
            count += comm.read_text().strip() == "rdk:main"
        except OSError:  # that thread ended meanwhile
            continue
    return count


@pytest.fixture(autouse=True)
def no_kafka_client_left() -> Iterator[None]:
    """Count the handles before the test's own fixtures and after their teardown; a client
    only unreachable garbage is collected first (gc), so only one still referenced fails."""
    before = live_kafka_clients()
    yield
    give_up = time.monotonic() + SETTLE_S
    while (after := live_kafka_clients()) > before and time.monotonic() < give_up:
        gc.collect()
        time.sleep(0.05)
    if after > before:
        pytest.fail(
            f"{after - before} Kafka client(s) left running by this test "
            "(close or flush and drop every Producer, Consumer and AdminClient)"
        )
