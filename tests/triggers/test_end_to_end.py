"""A workflow "webhook → http GET → condition → email", built through the API alone, runs end to
end against local servers: daphne, a real Celery worker, an HTTP server and an SMTP server."""

from __future__ import annotations

import email
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer

from accounts.models import User
from accounts.tokens import tokens_issue
from tests.executions.conftest import EngineProcesses, engine_processes
from tests.mail import PASSWORD, Recorder
from tests.servers import ServerUrl

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
TIMEOUT = 30


@pytest.fixture
def worker_reaching_loopback(
    django_db_setup: Any, django_db_blocker: Any
) -> Iterator[EngineProcesses]:
    """A worker whose HTTP node may call the test's own server on 127.0.0.1 (and nothing else)."""
    with engine_processes(django_db_blocker, HTTP_NODE_ALLOWED_HOSTS="127.0.0.1") as processes:
        processes.worker()
        yield processes


def order_graph(shop_url: str, credential_id: str) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": "hook",
                "type": "trigger",
                "params": {"mode": "webhook", "respond": "on_complete"},
            },
            {
                "id": "order",
                "type": "http",
                "params": {"method": "GET", "url": shop_url + "/orders/{{ input.body.order_id }}"},
            },
            {
                "id": "paid",
                "type": "condition",
                "params": {"expression": "{{ nodes.order.body.status == 'paid' }}"},
            },
            {
                "id": "receipt",
                "type": "email",
                "params": {
                    "credential": credential_id,
                    "to": ["{{ nodes.order.body.customer }}"],
                    "subject": "Order {{ input.body.order_id }} is paid",
                    "text": "Total: {{ nodes.order.body.total }} EUR",
                },
            },
        ],
        "edges": [
            {"source": "hook", "target": "order"},
            {"source": "order", "target": "paid"},
            {"source": "paid", "target": "receipt", "branch": "true"},
        ],
    }


def test_webhook_http_condition_email_runs_end_to_end_through_the_api(
    live_daphne: ServerUrl,
    worker_reaching_loopback: EngineProcesses,
    owner: User,
    httpserver: HTTPServer,
    smtp: tuple[Recorder, int],
) -> None:
    # given: a shop API and a mail server on loopback, and a user talking to the API only
    recorder, smtp_port = smtp
    httpserver.expect_request("/orders/42", method="GET").respond_with_json(
        {"status": "paid", "total": 99, "customer": "buyer@example.org"}
    )
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {tokens_issue(user=owner)['access']}"
    credential = api.post(
        f"{live_daphne}/api/credentials",
        json={
            "name": "mail",
            "type": "smtp",
            "data": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "username": "robot@autoflow.test",
                "password": PASSWORD,
                "security": "none",
            },
        },
        timeout=TIMEOUT,
    )
    assert credential.status_code == 201, credential.text
    shop_url = httpserver.url_for("").rstrip("/")
    created = api.post(
        f"{live_daphne}/api/workflows",
        json={
            "name": "paid orders",
            "graph": order_graph(shop_url, credential.json()["id"]),
            "active": True,
        },
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    webhook = api.get(
        f"{live_daphne}/api/workflows/{created.json()['id']}/webhook", timeout=TIMEOUT
    )
    assert webhook.status_code == 200, webhook.text
    assert webhook.json()["live"] is True

    # when: the outside world calls the webhook
    answer = requests.post(webhook.json()["url"], json={"order_id": 42}, timeout=TIMEOUT)

    # then: the answer is the e-mail node's output, the shop was asked, the receipt arrived
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == ["buyer@example.org"]
    assert answer.json()["message_id"]
    assert len(httpserver.log) == 1
    assert len(recorder.envelopes) == 1
    content = recorder.envelopes[0].content
    assert isinstance(content, bytes)
    message = email.message_from_bytes(content)
    assert message["Subject"] == "Order 42 is paid"
    assert message["To"] == "buyer@example.org"
    assert "Total: 99 EUR" in message.get_payload()
    executions = api.get(
        f"{live_daphne}/api/executions", params={"workflow": created.json()["id"]}, timeout=TIMEOUT
    ).json()["results"]
    assert [run["status"] for run in executions] == ["succeeded"]
    assert executions[0]["trigger"] == "webhook"
