"""The embedded default (`manage.py runplatform`, SQLite, in-process worker) runs workflows."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests

from tests.servers import free_port, run_server, server_env

pytestmark = pytest.mark.e2e


def test_runplatform_runs_a_workflow_with_a_delay(tmp_path: Path):
    port = free_port()
    env = server_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", REDIS_URL=None)
    command = [sys.executable, "manage.py", "runplatform", "--port", str(port)]
    with run_server(command, env, port) as url:
        account = {"email": "e@example.com", "password": "a sturdy passphrase 42", "name": "E"}
        tokens = requests.post(f"{url}/api/auth/register", json=account, timeout=10).json()
        headers = {"Authorization": f"Bearer {tokens['access']}"}
        graph = {
            "nodes": [
                {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
                {"id": "wait", "type": "delay", "params": {"seconds": 1}},
                {"id": "out", "type": "transform", "params": {"fields": {"n": "{{ input.n }}"}}},
            ],
            "edges": [{"source": "t", "target": "wait"}, {"source": "wait", "target": "out"}],
        }
        created = requests.post(
            f"{url}/api/workflows",
            json={"name": "embedded", "graph": graph},
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        started = requests.post(
            f"{url}/api/workflows/{created.json()['id']}/execute",
            json={"input": {"n": 7}},
            headers=headers,
            timeout=10,
        )
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        body: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = requests.get(
                f"{url}/api/executions/{execution_id}", headers=headers, timeout=10
            ).json()
            if body["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert body["status"] == "succeeded", body
        assert body["output"] == {"out": {"n": 7}}
        statuses = {run["node_id"]: run["status"] for run in body["node_runs"]}
        assert statuses == {"t": "succeeded", "wait": "succeeded", "out": "succeeded"}
