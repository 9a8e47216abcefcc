"""Scenario: 100,000 subscriptions in a real gateway and a real agent (issue 13, items 1 and 2),
this tree beside a baseline git ref (``--baseline``, extracted with ``git archive``, run with the
same Python). The measurement is ``bench.scale.subscriptions``, also in ``make bench``
(``--only subscriptions``); this runs it alone and writes its JSON.

    .venv/bin/python -m bench.subscription_memory [--subscriptions 100000] [--baseline main]

The stack is the benchmark's (``bench/harness.py``); ``--kafka-port`` etc. move it.
"""

from __future__ import annotations

import argparse
import json
import time

from bench import harness, scale
from webhookmaster.settings import PROJECT_ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--baseline", default="main", help="git ref to compare with ('': none)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--ingest-seconds", type=float, default=10)
    parser.add_argument("--state-dir")
    parser.add_argument("--kafka-port")
    parser.add_argument("--controller-port")
    parser.add_argument("--pg-port")
    args = parser.parse_args()
    for var, value in (
        ("WM_STATE_DIR", args.state_dir),
        ("WM_KAFKA_PORT", args.kafka_port),
        ("WM_KAFKA_CONTROLLER_PORT", args.controller_port),
        ("WM_PG_PORT", args.pg_port),
    ):
        if value:
            harness.BENCH_ENV[var] = value
    settings = harness.base_settings()
    with harness.baseline_tree(args.baseline) as base:
        results = scale.subscriptions(
            settings, args.subscriptions, args.requests, args.ingest_seconds, base
        )
    out = (
        PROJECT_ROOT / "bench" / "results" / f"subscriptions-{time.strftime('%Y%m%dT%H%M%S')}.json"
    )
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
