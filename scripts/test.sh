#!/usr/bin/env bash
# Run the whole test suite against the local PostgreSQL and Redis (its own test database, so
# it runs fine beside a platform started by scripts/start.sh). Extra arguments go to pytest.
# AUTOFLOW_TEST_QUICK=1 runs only the SQLite unit layer (no servers needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if [ "${AUTOFLOW_TEST_QUICK:-0}" = "1" ]; then
  export DATABASE_URL=sqlite:///:memory:
  unset REDIS_URL
  exec .venv/bin/pytest -m "not e2e" -p no:randomly "$@"
fi
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/autoflow}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}
export AUTOFLOW_REQUIRE_SERVERS=1
exec .venv/bin/pytest --cov --cov-report=term:skip-covered --cov-fail-under=85 "$@"
