#!/usr/bin/env bash
# Run the benchmarks: bootstrap, the plotting extra, then bench/run.py (which starts its own
# Kafka and PostgreSQL in .wm-state/bench on ports 18092/18093/18432).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
.venv/bin/python -c 'import matplotlib' 2>/dev/null || .venv/bin/pip install -q -e '.[bench]'
exec .venv/bin/python -m bench.run "$@"
