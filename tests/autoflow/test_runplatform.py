"""`manage.py runplatform`: the whole platform in one process, and its embedded worker."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from autoflow.celery import app
from autoflow.embedded import embedded_start
from tests.servers import free_port, run_server, server_env

pytestmark = pytest.mark.e2e


def test_runplatform_serves_the_whole_platform_on_sqlite(tmp_path: Path):
    port = free_port()
    env = server_env(DATABASE_URL=f"sqlite:///{tmp_path / 'platform.sqlite3'}", REDIS_URL=None)
    command = [sys.executable, "manage.py", "runplatform", "--port", str(port)]
    with run_server(command, env, port) as url:
        # then: migrated, serving, and the in-process worker is alive
        health = requests.get(f"{url}/health", timeout=10).json()
        assert health["status"] == "ok", health
        assert health["checks"]["workers"]["count"] >= 1
        assert health["checks"]["queue"]["depth"] == 0
        registered = requests.post(
            f"{url}/api/auth/register",
            json={"email": "emb@example.com", "password": "a sturdy passphrase 42", "name": "E"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        login = requests.post(
            f"{url}/api/auth/login",
            json={"email": "emb@example.com", "password": "a sturdy passphrase 42"},
            timeout=10,
        )
        assert login.status_code == 200
        me = requests.get(
            f"{url}/api/auth/me",
            headers={"Authorization": f"Bearer {login.json()['access']}"},
            timeout=10,
        )
        assert me.json()["email"] == "emb@example.com"
        docs_asset = requests.get(
            f"{url}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
            timeout=10,
        )
        assert docs_asset.status_code == 200
        process = url.process
    # stopping is clean and quick
    assert process.returncode == 0, url.log_text()
    assert "embedded worker started" in url.log_text()
    assert (tmp_path / "platform.sqlite3").exists()


@pytest.mark.usefixtures("transactional_db")
def test_embedded_worker_consumes_published_tasks(owner):
    # given: an expired refresh token for the daily flush task to remove
    expired = OutstandingToken.objects.create(
        user=owner,
        jti="expired-jti",
        token="x",
        created_at=timezone.now() - timedelta(days=30),
        expires_at=timezone.now() - timedelta(days=1),
    )
    services = embedded_start(app=app, with_beat=False)
    try:
        # when: published to the broker, not run eagerly
        app.send_task("accounts.tasks.flush_expired_tokens_task")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not OutstandingToken.objects.filter(pk=expired.pk).exists():
                break
            time.sleep(0.1)
        # then
        assert not OutstandingToken.objects.filter(pk=expired.pk).exists()
    finally:
        services.stop()
    assert not services.worker_thread.is_alive()
