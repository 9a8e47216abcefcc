#!/usr/bin/env bash
# Run the benchmarks: bootstrap, the plotting extra, then bench/run.py (which starts its own
# Kafka and PostgreSQL, by default in .wm-state/bench on ports 18092/18093/18432; WM_* and
# WM_BENCH_* override them: see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/pip install -q -e '.[bench]'
exec .venv/bin/python -m bench.run "$@"
