"""Django admin: workflows readable and filterable, credentials never show a secret."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import WorkflowFactory
from workflows.credentials import credential_create
from workflows.models import WorkflowVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_workflow_changelist_filters_and_search(admin_browser, owner):
    WorkflowFactory.create(owner=owner, name="Invoice sync", tags=["billing"], is_public=True)
    WorkflowFactory.create(owner=owner, name="Chat alerts", tags=["ops"])
    page = admin_browser.get("/admin/workflows/workflow/?tag=billing")
    assert page.status_code == 200
    assert b"Invoice sync" in page.content
    assert b"Chat alerts" not in page.content
    found = admin_browser.get("/admin/workflows/workflow/?q=alerts&is_public__exact=0")
    assert b"Chat alerts" in found.content
    assert b"Invoice sync" not in found.content


def test_workflow_change_page_shows_graph_and_versions(admin_browser, owner):
    workflow = WorkflowFactory.create(owner=owner, name="Readable")
    page = admin_browser.get(f"/admin/workflows/workflow/{workflow.id}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "&quot;type&quot;: &quot;trigger&quot;" in body  # pretty-printed JSON
    assert "Workflow versions" in body


def test_admin_edit_goes_through_the_service(admin_browser, owner):
    workflow = WorkflowFactory.create(owner=owner, name="Before")
    response = admin_browser.post(
        f"/admin/workflows/workflow/{workflow.id}/change/",
        {
            "name": "After",
            "description": "",
            "is_public": "on",
            "versions-TOTAL_FORMS": "1",
            "versions-INITIAL_FORMS": "1",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "1000",
            "versions-0-id": str(WorkflowVersion.objects.get(workflow=workflow).pk),
            "versions-0-workflow": str(workflow.id),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    workflow.refresh_from_db()
    assert (workflow.name, workflow.is_public, workflow.version) == ("After", True, 2)
    assert WorkflowVersion.objects.filter(workflow=workflow).count() == 2


def test_credential_admin_never_shows_secrets(admin_browser, owner):
    credential = credential_create(
        owner=owner,
        name="Mail",
        type="smtp",
        data={"host": "smtp.example.org", "username": "u", "password": "adm1n-hidden-pw"},
    )
    listing = admin_browser.get("/admin/workflows/credential/")
    page = admin_browser.get(f"/admin/workflows/credential/{credential.id}/change/")
    assert page.status_code == 200
    for response in (listing, page):
        assert b"adm1n-hidden-pw" not in response.content
    assert b"smtp.example.org" in page.content
    assert b"&quot;password&quot;: &quot;set&quot;" in page.content
