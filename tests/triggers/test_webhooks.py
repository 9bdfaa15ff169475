"""Webhooks end to end: a real HTTP client against daphne, runs by a real Celery worker."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from executions.models import ACTIVE_STATUSES, Execution
from tests.executions.conftest import EngineProcesses, wait_finished, wait_for
from tests.servers import ServerUrl, daphne_server, database_url_from_settings
from tests.triggers.conftest import webhook_workflow
from triggers import webhooks
from triggers.services import webhook_token_rotate
from workflows.models import WebhookCall, Workflow
from workflows.services import workflow_create, workflow_delete, workflow_update

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 40


@pytest.fixture(autouse=True)
def _runs_settle(trigger_worker: EngineProcesses) -> Iterator[None]:
    """Let the worker finish every run a test started, so the table flush never races it."""
    yield
    wait_for(lambda: not Execution.objects.filter(status__in=ACTIVE_STATUSES).exists(), timeout=60)


def _hook(server: str, workflow: Workflow) -> str:
    workflow.refresh_from_db()
    assert workflow.webhook_token
    return f"{server}/api/hooks/{workflow.webhook_token}"


def _signed(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _recorded_calls(workflow: Workflow) -> list[WebhookCall]:
    """The workflow's calls, once the web process's call log has written them (batched)."""
    calls: list[WebhookCall] = wait_for(
        lambda: list(WebhookCall.objects.filter(workflow=workflow)), timeout=10
    )
    return calls


def test_post_answers_202_and_runs_with_the_request_as_input(
    live_daphne: ServerUrl, trigger_worker: EngineProcesses, owner: User
) -> None:
    # given an active webhook workflow
    workflow = webhook_workflow(owner)

    # when a client posts JSON to its URL, with a query and a header
    response = requests.post(
        _hook(live_daphne, workflow) + "?source=shop&tag=a&tag=b",
        json={"a": 1, "b": 2, "workflow": "not-an-id-we-use"},
        headers={"X-Shop": "north"},
        timeout=TIMEOUT,
    )

    # then it answers at once, and the execution saw the request
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    execution = wait_finished(body["execution_id"])
    assert execution.status == "succeeded"
    assert execution.trigger == "webhook"
    assert execution.workflow_id == workflow.pk
    assert execution.input["method"] == "POST"
    assert execution.input["body"] == {"a": 1, "b": 2, "workflow": "not-an-id-we-use"}
    assert execution.input["query"] == {"source": "shop", "tag": ["a", "b"]}
    assert execution.input["headers"]["x-shop"] == "north"
    assert execution.output == {"shape": {"total": 3}}
    [call] = _recorded_calls(workflow)
    assert (call.method, call.status, call.execution_id) == ("POST", 202, execution.pk)


def test_form_and_text_bodies_are_parsed_by_content_type(
    live_daphne: ServerUrl, trigger_worker: EngineProcesses, owner: User
) -> None:
    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    url = _hook(live_daphne, workflow)

    form = requests.post(url, data={"x": "1", "y": ["2", "3"]}, timeout=TIMEOUT)
    multipart = requests.post(
        url, data={"x": "1"}, files={"y": ("y.txt", b"file text")}, timeout=TIMEOUT
    )
    # Said to be multipart, but is not: Django answers it, not daphne's HTTP server.
    not_multipart = requests.post(
        url, data=b"abc", headers={"Content-Type": "multipart/form-data"}, timeout=TIMEOUT
    )
    text = requests.post(
        url, data="plain words", headers={"Content-Type": "text/plain"}, timeout=TIMEOUT
    )
    malformed = requests.post(
        url, data="{not json", headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )

    assert form.status_code == 202
    assert Execution.objects.get(pk=form.json()["execution_id"]).input["body"] == {
        "x": "1",
        "y": ["2", "3"],
    }
    assert multipart.status_code == 202, multipart.text
    assert Execution.objects.get(pk=multipart.json()["execution_id"]).input["body"] == {"x": "1"}
    assert not_multipart.status_code == 400, not_multipart.text
    assert not_multipart.json()["error"]["code"] == "validation_error"
    assert text.status_code == 202
    assert Execution.objects.get(pk=text.json()["execution_id"]).input["body"] == "plain words"
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "validation_error"
    assert Execution.objects.filter(workflow=workflow).count() == 3


def test_what_the_database_cannot_store_anywhere_in_the_call_is_400_and_stores_nothing(
    live_daphne: ServerUrl, owner: User
) -> None:
    # A NUL, NaN, Infinity, a lone surrogate (`autoflow.storable`): before, each of these was a
    # 500 from the execution's insert.
    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    url = _hook(live_daphne, workflow)
    calls = [
        requests.post(url, json={"a": "x\x00y"}, timeout=TIMEOUT),
        requests.post(url, json={"k\x00": 1}, timeout=TIMEOUT),
        requests.post(url, data={"x": "\x00"}, timeout=TIMEOUT),
        requests.post(
            url, data=b"raw\x00text", headers={"Content-Type": "text/plain"}, timeout=TIMEOUT
        ),
        requests.post(url + "?q=%00", json={}, timeout=TIMEOUT),
    ]
    # Nor NaN or Infinity, which Python's json reads but JSON (and jsonb) has not.
    not_json = [
        requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
        for body in ('{"a": NaN}', '{"a": [Infinity]}', "-Infinity")
    ]

    for response in calls:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert "NUL" in error["message"]
    for response in not_json:
        assert response.status_code == 400, response.text
        assert "is not a JSON number" in response.json()["error"]["message"]
    lone = requests.post(
        url, data='{"a": "\\ud800"}', headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    assert lone.status_code == 400, lone.text
    assert "lone surrogate" in lone.json()["error"]["message"]
    assert not Execution.objects.filter(workflow=workflow).exists()
    # The six characters `\u0000` as text are no NUL: that call runs.
    text = requests.post(url, json={"a": "\\u0000"}, timeout=TIMEOUT)
    assert text.status_code == 202, text.text
    assert Execution.objects.get(workflow=workflow).input["body"] == {"a": "\\u0000"}


def test_on_complete_answers_200_with_the_leaf_output(
    live_daphne: ServerUrl, trigger_worker: EngineProcesses, owner: User
) -> None:
    workflow = webhook_workflow(
        owner,
        respond="on_complete",
        fields={"a": "{{ input.body.a }}", "total": "{{ input.body.a + input.body.b }}"},
    )

    response = requests.post(_hook(live_daphne, workflow), json={"a": 1, "b": 2}, timeout=TIMEOUT)

    assert response.status_code == 200, response.text
    assert response.json() == {"a": 1, "total": 3}
    [call] = _recorded_calls(workflow)
    assert call.status == 200
    assert call.execution_id is not None
    assert Execution.objects.get(pk=call.execution_id).status == "succeeded"


def _subscribe_calls() -> int:
    stats = redis.Redis.from_url(os.environ["REDIS_URL"]).info("commandstats")
    return int(stats.get("cmdstat_subscribe", {}).get("calls", 0))


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="pub/sub delivery needs Redis")
def test_waiting_calls_share_their_processs_channel_and_subscribe_nothing_per_call(
    live_daphne: ServerUrl, trigger_worker: EngineProcesses, owner: User
) -> None:
    workflow = webhook_workflow(owner, respond="on_complete", fields={"n": "{{ input.body.n }}"})
    url = _hook(live_daphne, workflow)
    first = requests.post(url, json={"n": 0}, timeout=TIMEOUT)  # the process subscribes once
    assert first.status_code == 200, first.text

    before = _subscribe_calls()
    answers = [requests.post(url, json={"n": n}, timeout=TIMEOUT) for n in (1, 2, 3)]
    after = _subscribe_calls()

    assert [(a.status_code, a.json()) for a in answers] == [(200, {"n": n}) for n in (1, 2, 3)]
    assert after == before
    channels = set(Execution.objects.filter(workflow=workflow).values_list("notify_channel"))
    assert len(channels) == 1
    ((channel,),) = channels
    assert channel.startswith("autoflow:completion:autoflow-completions-")


def test_on_complete_answers_422_when_the_execution_fails(
    live_daphne: ServerUrl, trigger_worker: EngineProcesses, owner: User
) -> None:
    workflow = webhook_workflow(owner, respond="on_complete", fields={"boom": "{{ 1 / 0 }}"})

    response = requests.post(_hook(live_daphne, workflow), json={}, timeout=TIMEOUT)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "execution_failed"
    details = error["details"]
    assert details["status"] == "failed"
    assert details["error"]["code"] == "expression_error"
    assert details["error"]["node_id"] == "shape"
    assert Execution.objects.get(pk=details["execution_id"]).status == "failed"
    assert [call.status for call in _recorded_calls(workflow)] == [422]


def test_on_complete_answers_202_when_the_bound_passes(
    trigger_worker: EngineProcesses, owner: User
) -> None:
    # given a run that waits 3 s, and a server that waits for it at most one second
    from django.db import connection

    workflow = workflow_create(
        owner=owner,
        name="slow",
        graph={
            "nodes": [
                {
                    "id": "t",
                    "type": "trigger",
                    "params": {"mode": "webhook", "respond": "on_complete"},
                },
                {"id": "pause", "type": "delay", "params": {"seconds": 3}},
            ],
            "edges": [{"source": "t", "target": "pause"}],
        },
        active=True,
    )
    database_url = database_url_from_settings(connection.settings_dict)

    with daphne_server(DATABASE_URL=database_url, WEBHOOK_RESPOND_TIMEOUT_SECONDS="1") as server:
        response = requests.post(_hook(server, workflow), json={}, timeout=TIMEOUT)

    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("queued", "running", "waiting")
    # The server stopped at once: its queued record was written on the way out.
    assert [call.status for call in WebhookCall.objects.filter(workflow=workflow)] == [202]
    assert wait_finished(response.json()["execution_id"]).status == "succeeded"


def test_unknown_and_inactive_hooks_are_404_and_methods_405(
    live_daphne: ServerUrl, owner: User
) -> None:
    inactive = webhook_workflow(owner, active=False)
    post_only = webhook_workflow(owner)
    get_too = webhook_workflow(owner, methods=["GET", "POST"], fields={"ok": "yes"})

    unknown = requests.post(f"{live_daphne}/api/hooks/not-a-token", json={}, timeout=TIMEOUT)
    off = requests.post(_hook(live_daphne, inactive), json={}, timeout=TIMEOUT)
    wrong_method = requests.get(_hook(live_daphne, post_only), timeout=TIMEOUT)
    allowed_get = requests.get(_hook(live_daphne, get_too) + "?q=1", timeout=TIMEOUT)

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert off.status_code == 404
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert wrong_method.headers["Allow"] == "POST"
    assert allowed_get.status_code == 202
    assert Execution.objects.get(pk=allowed_get.json()["execution_id"]).input["query"] == {"q": "1"}
    assert Execution.objects.filter(workflow__in=[inactive, post_only]).count() == 0
    assert [c.status for c in _recorded_calls(inactive)] == [404]
    assert [c.status for c in _recorded_calls(post_only)] == [405]


def test_oversize_body_is_413(live_daphne: ServerUrl, owner: User) -> None:
    workflow = webhook_workflow(owner)

    response = requests.post(
        _hook(live_daphne, workflow),
        data=b"x" * (3 * 1024 * 1024),
        headers={"Content-Type": "text/plain"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert Execution.objects.filter(workflow=workflow).count() == 0


def test_signature_is_checked_before_the_body_is_parsed(
    live_daphne: ServerUrl, owner: User
) -> None:
    secret = "s3cret-shared-value"
    workflow = webhook_workflow(owner, secret=secret, fields={"ok": "yes"})
    url = _hook(live_daphne, workflow)
    body = json.dumps({"a": 1}).encode()
    json_headers = {"Content-Type": "application/json"}

    good = requests.post(
        url,
        data=body,
        headers={**json_headers, "X-AutoFlow-Signature": _signed(secret, body)},
        timeout=TIMEOUT,
    )
    bad = requests.post(
        url,
        data=body,
        headers={**json_headers, "X-AutoFlow-Signature": _signed("other-secret", body)},
        timeout=TIMEOUT,
    )
    missing = requests.post(url, data=body, headers=json_headers, timeout=TIMEOUT)
    # malformed JSON with a wrong signature: the signature answers, not the parser
    unparsed = requests.post(
        url,
        data=b"{broken",
        headers={**json_headers, "X-AutoFlow-Signature": "sha256=00"},
        timeout=TIMEOUT,
    )

    assert good.status_code == 202, good.text
    for refused in (bad, missing, unparsed):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "signature_invalid"
    assert Execution.objects.filter(workflow=workflow).count() == 1


def test_idempotency_key_replays_the_first_answer(live_daphne: ServerUrl, owner: User) -> None:
    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    url = _hook(live_daphne, workflow)
    headers = {"Idempotency-Key": "order-42"}

    first = requests.post(url, json={"n": 1}, headers=headers, timeout=TIMEOUT)
    replay = requests.post(url, json={"n": 1}, headers=headers, timeout=TIMEOUT)
    different = requests.post(url, json={"n": 2}, headers=headers, timeout=TIMEOUT)

    assert first.status_code == 202
    assert replay.status_code == 202
    assert replay.json() == first.json()
    assert different.status_code == 409
    assert different.json()["error"]["code"] == "idempotency_conflict"
    assert Execution.objects.filter(workflow=workflow).count() == 1


def test_rate_limit_per_token_is_429(owner: User) -> None:
    from django.db import connection

    limited = webhook_workflow(owner, fields={"ok": "yes"})
    other = webhook_workflow(owner, fields={"ok": "yes"})
    database_url = database_url_from_settings(connection.settings_dict)

    with daphne_server(DATABASE_URL=database_url, RATE_LIMIT_WEBHOOK="2/1m") as server:
        answers = [
            requests.post(_hook(server, limited), json={}, timeout=TIMEOUT).status_code
            for _ in range(3)
        ]
        last = requests.post(_hook(server, limited), json={}, timeout=TIMEOUT)
        other_answer = requests.post(_hook(server, other), json={}, timeout=TIMEOUT)

    assert answers == [202, 202, 429]
    assert last.status_code == 429
    assert last.json()["error"]["code"] == "rate_limited"
    assert int(last.headers["Retry-After"]) >= 1
    assert other_answer.status_code == 202
    assert Execution.objects.filter(workflow=limited).count() == 2


def test_webhook_input_keeps_no_cookie(live_daphne: ServerUrl, owner: User) -> None:
    workflow = webhook_workflow(owner, fields={"ok": "yes"})

    response = requests.post(
        _hook(live_daphne, workflow), json={}, cookies={"sessionid": "abc"}, timeout=TIMEOUT
    )

    assert response.status_code == 202
    headers: dict[str, Any] = Execution.objects.get(pk=response.json()["execution_id"]).input[
        "headers"
    ]
    assert "cookie" not in headers


def _edit(workflow: Workflow, **changes: Any) -> Workflow:
    workflow.refresh_from_db()
    return workflow_update(
        workflow=workflow, by=workflow.owner, expected_version=workflow.version, changes=changes
    )


def _trigger_changed(workflow: Workflow, **params: Any) -> dict[str, Any]:
    workflow.refresh_from_db()
    graph: dict[str, Any] = json.loads(json.dumps(workflow.graph))
    graph["nodes"][0]["params"].update(params)
    return graph


def test_a_webhook_called_before_answers_by_its_workflow_as_it_is_now(
    live_daphne: ServerUrl, owner: User
) -> None:
    # given a webhook the server has answered once (it keeps what it read of the workflow)
    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    url = _hook(live_daphne, workflow)
    answers = [requests.post(url, json={}, timeout=TIMEOUT).status_code]

    # when the workflow changes between calls, each call answers as the workflow is now
    _edit(workflow, graph=_trigger_changed(workflow, methods=["PUT"]))
    answers.append(requests.post(url, json={}, timeout=TIMEOUT).status_code)
    answers.append(requests.put(url, json={}, timeout=TIMEOUT).status_code)
    _edit(workflow, graph=_trigger_changed(workflow, secret="now-signed"))
    answers.append(requests.put(url, json={}, timeout=TIMEOUT).status_code)
    body = b"{}"
    signed = {
        "Content-Type": "application/json",
        "X-AutoFlow-Signature": _signed("now-signed", body),
    }
    answers.append(requests.put(url, data=body, headers=signed, timeout=TIMEOUT).status_code)
    _edit(workflow, active=False)
    # what the server kept says live: a body it would refuse is still answered as gone
    broken = b"{broken"
    signed_broken = {**signed, "X-AutoFlow-Signature": _signed("now-signed", broken)}
    answers.append(
        requests.put(url, data=broken, headers=signed_broken, timeout=TIMEOUT).status_code
    )
    answers.append(requests.put(url, data=body, headers=signed, timeout=TIMEOUT).status_code)
    _edit(workflow, active=True)
    answers.append(requests.put(url, data=body, headers=signed, timeout=TIMEOUT).status_code)
    rotated = webhook_token_rotate(workflow=workflow)
    answers.append(requests.put(url, data=body, headers=signed, timeout=TIMEOUT).status_code)
    new_url = f"{live_daphne}/api/hooks/{rotated.webhook_token}"
    answers.append(requests.put(new_url, data=body, headers=signed, timeout=TIMEOUT).status_code)

    # then
    assert answers == [202, 405, 202, 401, 202, 404, 404, 202, 404, 202]
    # Each run is of the version current at its call.
    versions = Execution.objects.filter(workflow=workflow).values_list(
        "workflow_version", flat=True
    )
    assert sorted(versions) == [1, 2, 3, 5, 5]

    # One record per call that reached the workflow, once each, with what it answered (the
    # call to the rotated-away token reached none).
    def statuses() -> list[int]:
        return sorted(c.status for c in WebhookCall.objects.filter(workflow=workflow))

    expected = sorted([202, 405, 202, 401, 202, 404, 404, 202, 202])
    with contextlib.suppress(AssertionError):  # the batched writes are in when all are
        wait_for(lambda: len(statuses()) >= len(expected), timeout=10)
    assert statuses() == expected
    # and a deleted workflow's webhook is gone with it
    workflow_delete(workflow=rotated, by=owner)
    assert requests.put(new_url, data=body, headers=signed, timeout=TIMEOUT).status_code == 404


def test_a_webhook_changed_since_the_server_read_it_counts_its_rate_once(owner: User) -> None:
    from django.db import connection

    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    database_url = database_url_from_settings(connection.settings_dict)

    with daphne_server(DATABASE_URL=database_url, RATE_LIMIT_WEBHOOK="3/1m") as server:
        url = _hook(server, workflow)
        first = requests.post(url, json={}, timeout=TIMEOUT).status_code
        # The server's copy is now stale: this call is checked on it, then on the row.
        _edit(workflow, description="changed")
        answers = [requests.post(url, json={}, timeout=TIMEOUT).status_code for _ in range(3)]

    assert [first, *answers] == [202, 202, 202, 429]
    assert Execution.objects.filter(workflow=workflow).count() == 3


def test_a_webhook_deactivated_since_the_server_read_it_is_404_not_rate_limited(
    owner: User,
) -> None:
    from django.db import connection

    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    database_url = database_url_from_settings(connection.settings_dict)

    with daphne_server(DATABASE_URL=database_url, RATE_LIMIT_WEBHOOK="2/1m") as server:
        url = _hook(server, workflow)
        answers = [requests.post(url, json={}, timeout=TIMEOUT).status_code for _ in range(2)]
        _edit(workflow, active=False)
        answers.append(requests.post(url, json={}, timeout=TIMEOUT).status_code)

    assert answers == [202, 202, 404]


def test_a_call_to_a_webhook_seen_before_reads_no_workflow_row(owner: User) -> None:
    from django.db import connection

    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    workflow = _edit(workflow, graph=_trigger_changed(workflow, methods=["POST", "PUT"]))
    token = str(workflow.webhook_token)

    def call() -> webhooks.Accepted:
        request = RequestFactory().post(
            f"/api/hooks/{token}", data={}, content_type="application/json"
        )
        return webhooks._accept(request, token, uuid.uuid4(), "")

    call()
    with CaptureQueriesContext(connection) as queries:
        accepted = call()

    assert accepted.status == "queued"
    # and it runs the workflow's current version
    started = Execution.objects.get(pk=accepted.execution_id)
    assert (started.workflow_version, started.version.version) == (2, 2)
    assert not [q for q in queries if "workflows_workflow" in q["sql"].split("WHERE")[0]]
