#!/usr/bin/env bash
# The lint checks (`make lint`, and scripts/test.sh before the tests): ruff's rules, ruff's
# formatting, and mypy --strict on the package code (the packages and options are in
# pyproject.toml's [tool.mypy]).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
