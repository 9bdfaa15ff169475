"""`workflow_get_for_user` applies the list's visibility rule to one row, with no extra query."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoflow.exceptions import NotFound, PermissionDeniedError
from tests.executions.conftest import make_graph, make_workflow
from workflows.selectors import workflow_get_for_user, workflow_get_for_write

pytestmark = pytest.mark.django_db


def test_the_owner_gets_it_in_one_query_with_the_owner_attached(owner):
    workflow = make_workflow(owner, make_graph([], []))
    with CaptureQueriesContext(connection) as queries:
        found = workflow_get_for_user(user=owner, workflow_id=workflow.pk)
        assert found.owner.email == owner.email
    assert found.pk == workflow.pk
    assert len(queries) == 1


def test_others_see_it_only_when_public_and_admins_always(owner, reader, admin_user):
    private = make_workflow(owner, make_graph([], []))
    public = make_workflow(owner, make_graph([], []), is_public=True)
    with pytest.raises(NotFound):
        workflow_get_for_user(user=reader, workflow_id=private.pk)
    found = workflow_get_for_user(user=reader, workflow_id=public.pk)
    assert found.owner.pk == owner.pk  # read lazily: not the caller
    assert workflow_get_for_user(user=admin_user, workflow_id=private.pk).pk == private.pk
    with pytest.raises(PermissionDeniedError):
        workflow_get_for_write(user=reader, workflow_id=public.pk)
    assert workflow_get_for_write(user=admin_user, workflow_id=private.pk).pk == private.pk


def test_a_missing_or_malformed_id_is_not_found(owner):
    with pytest.raises(NotFound):
        workflow_get_for_user(user=owner, workflow_id="not-a-uuid")
