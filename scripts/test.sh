#!/usr/bin/env bash
# Run the test suite against a real Kafka broker and PostgreSQL, which the tests' own fixtures
# start (state in .wm-state/test, ports 19092/19093/19432 unless WM_TEST_* say otherwise),
# after the lint checks of `make lint`; the deployment files' validators (helm, CRDs, ...) are
# installed first (scripts/install-deploy-tools.sh, cached in ~/.cache/webhookmaster).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
./scripts/install-deploy-tools.sh
./scripts/lint.sh
exec .venv/bin/python -m pytest --durations=25 "$@"
