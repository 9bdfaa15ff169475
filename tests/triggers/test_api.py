"""`GET /api/workflows/{id}/webhook` and `POST .../webhook/rotate`."""

from __future__ import annotations

import pytest
import requests

from accounts.models import User
from accounts.services import api_key_create
from tests.conftest import client_for
from tests.servers import ServerUrl
from tests.triggers.conftest import trigger_graph, webhook_workflow
from workflows.models import WebhookCall
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_info_shows_the_url_and_that_it_is_live(owner: User) -> None:
    workflow = webhook_workflow(owner, methods=["GET", "POST"], respond="on_complete")
    workflow.refresh_from_db()
    WebhookCall.objects.create(workflow=workflow, method="POST", status=202)
    WebhookCall.objects.create(workflow=workflow, method="GET", status=405)

    response = client_for(owner).get(f"/api/workflows/{workflow.pk}/webhook")

    assert response.status_code == 200
    body = response.json()
    assert body["url"] == f"http://testserver/api/hooks/{workflow.webhook_token}"
    assert body["methods"] == ["GET", "POST"]
    assert body["respond"] == "on_complete"
    assert body["live"] is True
    assert body["reasons"] == []
    assert [(c["method"], c["status"]) for c in body["last_calls"]] == [
        ("GET", 405),
        ("POST", 202),
    ]


def test_info_says_why_a_hook_is_not_live(owner: User) -> None:
    inactive = webhook_workflow(owner, active=False)
    manual = workflow_create(
        owner=owner, name="m", graph=trigger_graph({"mode": "manual"}, {"a": "b"})
    )

    off = client_for(owner).get(f"/api/workflows/{inactive.pk}/webhook").json()
    none = client_for(owner).get(f"/api/workflows/{manual.pk}/webhook").json()

    assert off["live"] is False
    assert off["reasons"] == ["inactive"]
    assert off["url"] is not None
    assert none["url"] is None
    assert none["methods"] == []
    assert none["reasons"] == ["inactive", "no webhook trigger"]


def test_info_is_hidden_from_outsiders_and_read_only_for_readers(
    owner: User, reader: User, outsider: User
) -> None:
    workflow = webhook_workflow(owner)
    public = webhook_workflow(owner)
    public.is_public = True
    public.save(update_fields=["is_public"])

    assert client_for(outsider).get(f"/api/workflows/{workflow.pk}/webhook").status_code == 404
    assert client_for(reader).get(f"/api/workflows/{public.pk}/webhook").status_code == 200
    rotate = client_for(reader).post(f"/api/workflows/{public.pk}/webhook/rotate")
    assert rotate.status_code == 403
    hidden = client_for(outsider).post(f"/api/workflows/{workflow.pk}/webhook/rotate")
    assert hidden.status_code == 404


def test_api_key_scopes(owner: User) -> None:
    workflow = webhook_workflow(owner)
    _, read_key = api_key_create(user=owner, name="r", scopes=["workflows:read"], expires_at=None)
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {read_key}")

    assert client.get(f"/api/workflows/{workflow.pk}/webhook").status_code == 200
    refused = client.post(f"/api/workflows/{workflow.pk}/webhook/rotate")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "scope_missing"


def test_rotate_gives_a_new_url_and_the_old_one_stops_at_once(
    live_daphne: ServerUrl, owner: User
) -> None:
    workflow = webhook_workflow(owner, fields={"ok": "yes"})
    workflow.refresh_from_db()
    old_url = f"{live_daphne}/api/hooks/{workflow.webhook_token}"
    assert requests.post(old_url, json={}, timeout=30).status_code == 202

    response = client_for(owner).post(f"/api/workflows/{workflow.pk}/webhook/rotate")

    assert response.status_code == 200
    workflow.refresh_from_db()
    new_url = response.json()["url"]
    assert new_url == f"http://testserver/api/hooks/{workflow.webhook_token}"
    assert not old_url.endswith(str(workflow.webhook_token))
    assert requests.post(old_url, json={}, timeout=30).status_code == 404
    fresh = f"{live_daphne}/api/hooks/{workflow.webhook_token}"
    assert requests.post(fresh, json={}, timeout=30).status_code == 202


def test_rotate_without_a_webhook_trigger_is_409(owner: User) -> None:
    manual = workflow_create(
        owner=owner, name="m", graph=trigger_graph({"mode": "manual"}, {"a": "b"})
    )

    response = client_for(owner).post(f"/api/workflows/{manual.pk}/webhook/rotate")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"
