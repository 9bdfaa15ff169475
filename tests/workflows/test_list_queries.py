"""The workflow list costs the same number of queries whatever the page size (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from tests.conftest import client_for
from tests.factories import UserFactory, WorkflowFactory

pytestmark = pytest.mark.django_db


def _queries_for_page(user: User, page_size: int) -> int:
    client = client_for(user)
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(f"/api/workflows?page_size={page_size}")
    assert answer.status_code == 200, answer.content
    assert len(answer.json()["results"]) == page_size
    return len(captured)


def test_workflow_list_queries_do_not_grow_with_page_size(owner: User) -> None:
    # given: own workflows and public ones of several other owners (each row shows its owner)
    WorkflowFactory.create_batch(30, owner=owner, tags=["prod"])
    for index in range(30):
        other = UserFactory.create(email=f"public-owner{index}@example.com")
        WorkflowFactory.create(owner=other, is_public=True)

    # when
    small = _queries_for_page(owner, 2)
    large = _queries_for_page(owner, 60)

    # then: the user, the count and the page, however many rows and owners it shows
    assert small == large
    assert large <= 3
