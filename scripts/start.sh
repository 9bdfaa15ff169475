#!/usr/bin/env bash
# Install (first run) and start the whole platform on the embedded default at 127.0.0.1:8000:
# REST API, WebSocket, admin, job queue + worker and schedules in one process, on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python manage.py runplatform "$@"
