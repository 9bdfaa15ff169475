"""Optimistic locking under a real race: two concurrent writers from one version, one wins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from nodes.registry import node_types
from tests.conftest import client_for
from tests.factories import WorkflowFactory, simple_graph
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 5


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread (own database connection), released together."""
    # The node registry loads lazily and not thread-safely (reported); load it before
    # racing so these tests measure locking only.
    node_types()
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = calls[index]()
        except Exception as error:  # surfaced below, in the test's own thread
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def test_two_concurrent_updates_from_one_version_exactly_one_wins(owner):
    if connection.vendor != "postgresql":
        pytest.skip("the race needs a database that runs two writers at once")
    # given
    workflow = WorkflowFactory.create(owner=owner)
    url = f"/api/workflows/{workflow.id}"
    for round_number in range(ROUNDS):
        version = 1 + round_number
        clients = [client_for(owner), client_for(owner)]

        def writer(index: int, version: int = version, clients: list[Any] = clients) -> Any:
            body = {
                "name": f"writer {index}",
                "graph": simple_graph(f"w{index}"),
                "version": version,
            }
            return clients[index].put(url, body, format="json")

        # when: both send the version they read at the same moment
        responses = _race([lambda: writer(0), lambda: writer(1)])
        # then: exactly one is accepted, the other told the version moved on
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 409], [r.content for r in responses]
        loser = next(r for r in responses if r.status_code == 409)
        assert loser.json()["error"]["code"] == "version_conflict"
        assert loser.json()["error"]["details"]["current_version"] == version + 1
        winner = next(r for r in responses if r.status_code == 200)
        stored = Workflow.objects.get(pk=workflow.pk)
        assert stored.version == version + 1
        assert stored.name == winner.json()["name"]
    assert WorkflowVersion.objects.filter(workflow=workflow).count() == ROUNDS + 1


def test_concurrent_restores_and_patches_never_lose_a_version_row(owner):
    if connection.vendor != "postgresql":
        pytest.skip("the race needs a database that runs two writers at once")
    # given: a workflow at version 2
    workflow = WorkflowFactory.create(owner=owner)
    client = client_for(owner)
    url = f"/api/workflows/{workflow.id}"
    assert client.patch(url, {"name": "v2", "version": 1}, format="json").status_code == 200
    other = client_for(owner)
    # when: a restore and a patch race from version 2
    responses = _race(
        [
            lambda: client.post(f"{url}/versions/1/restore", {"version": 2}, format="json"),
            lambda: other.patch(url, {"name": "patched"}, format="json", HTTP_IF_MATCH='"2"'),
        ]
    )
    # then
    assert sorted(response.status_code for response in responses) == [200, 409]
    versions = list(
        WorkflowVersion.objects.filter(workflow=workflow)
        .order_by("version")
        .values_list("version", flat=True)
    )
    assert versions == [1, 2, 3]
