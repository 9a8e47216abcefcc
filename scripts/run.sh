#!/usr/bin/env bash
# Start the whole pipeline locally: Kafka, PostgreSQL, topics, migrations and every component.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/webhookmaster stack up "$@"
