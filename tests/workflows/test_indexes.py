"""The list and tag-filter queries use their indexes on 10,000 realistic workflows (PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from workflows.models import Workflow
from workflows.selectors import workflow_list

pytestmark = pytest.mark.django_db

WORKFLOW_COUNT = 10_000
OWNER_COUNT = 250
COMMON_TAGS = ["prod", "staging", "daily", "billing", "crm", "marketing", "ops", "alerts"]
RARE_TAGS = [f"team-{index}" for index in range(120)]


def _graph(rng: random.Random) -> dict[str, Any]:
    steps = rng.randint(1, 6)
    nodes: list[dict[str, Any]] = [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}]
    edges = []
    previous = "t"
    for index in range(steps):
        node_id = f"n{index}"
        if rng.random() < 0.5:
            nodes.append(
                {
                    "id": node_id,
                    "type": "http",
                    "params": {"method": "GET", "url": f"https://api.example.org/{index}"},
                }
            )
        else:
            nodes.append({"id": node_id, "type": "debug", "params": {"message": "step"}})
        edges.append({"source": previous, "target": node_id})
        previous = node_id
    return {"nodes": nodes, "edges": edges}


def _populate() -> list[User]:
    rng = random.Random(20261126)
    password = make_password(None)
    owners = User.objects.bulk_create(
        [
            User(email=f"owner{index}@example.com", name=f"Owner {index}", password=password)
            for index in range(OWNER_COUNT)
        ]
    )
    now = timezone.now()
    workflows = []
    for index in range(WORKFLOW_COUNT):
        # A few heavy users own most workflows, as in any real installation.
        owner = (
            owners[min(int(rng.paretovariate(1.2)) - 1, OWNER_COUNT - 1)]
            if rng.random() < 0.3
            else rng.choice(owners)
        )
        tags = rng.sample(COMMON_TAGS, rng.randint(0, 2)) + rng.sample(RARE_TAGS, rng.randint(0, 2))
        created = now - dt.timedelta(minutes=rng.randint(0, 60 * 24 * 365))
        workflows.append(
            Workflow(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                owner=owner,
                name=f"Workflow {index}",
                description=rng.choice(["", "Syncs invoices", "Posts alerts to chat"]),
                graph=_graph(rng),
                tags=tags,
                is_public=rng.random() < 0.05,
                active=rng.random() < 0.3,
                created_at=created,
                updated_at=created + dt.timedelta(minutes=rng.randint(0, 5000)),
            )
        )
    Workflow.objects.bulk_create(workflows, batch_size=1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE workflows_workflow")
        cursor.execute("ANALYZE accounts_user")
    return owners


def _plan(queryset: QuerySet[Workflow]) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def populated() -> list[User]:
    if connection.vendor != "postgresql":
        pytest.skip("GIN indexes exist on PostgreSQL only")
    return _populate()


def test_gin_indexes_exist() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("GIN indexes exist on PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'workflows_workflow'"
        )
        indexes = dict(cursor.fetchall())
    assert "gin" in indexes["workflow_tags_gin"].lower()
    assert "gin" in indexes["workflow_graph_gin"].lower()
    assert "workflow_owner_updated" in indexes


def test_list_by_owner_uses_owner_updated_index(populated: list[User]) -> None:
    # given: an ordinary user listing their own workflows (`?owner=me`, first page)
    owner = populated[3]
    queryset = workflow_list(user=owner, owner_id=owner.id)[:20]
    # when
    plan = _plan(queryset)
    # then
    assert "workflow_owner_updated" in plan, plan
    assert "Seq Scan on workflows_workflow" not in plan, plan


def test_tag_filter_uses_gin_index(populated: list[User]) -> None:
    # given: workflows carrying two given tags, as an admin lists them
    admin = User(is_staff=True)
    queryset = workflow_list(user=admin, tags=["team-7", "prod"])[:20]
    # when
    plan = _plan(queryset)
    # then
    assert "workflow_tags_gin" in plan, plan
    assert "Seq Scan on workflows_workflow" not in plan, plan
    expected = {
        workflow.pk
        for workflow in Workflow.objects.all().only("tags")
        if {"team-7", "prod"} <= set(workflow.tags)
    }
    assert {
        workflow.pk for workflow in workflow_list(user=admin, tags=["team-7", "prod"])
    } == expected


def test_graph_containment_uses_gin_index(populated: list[User]) -> None:
    queryset = Workflow.objects.filter(
        graph__contains={"nodes": [{"type": "trigger", "params": {"mode": "webhook"}}]}
    )
    plan = _plan(queryset)
    assert "workflow_graph_gin" in plan, plan


def test_users_visible_list_and_tag_filter_use_indexes(populated: list[User]) -> None:
    # given: an ordinary user's default list (own + public) and their tag filter
    user = populated[3]
    visible_plan = _plan(workflow_list(user=user)[:20])
    tag_plan = _plan(workflow_list(user=user, tags=["team-7", "prod"])[:20])
    # then
    assert "workflow_owner_updated" in visible_plan, visible_plan
    assert "workflow_public_updated" in visible_plan, visible_plan
    assert "Seq Scan on workflows_workflow" not in visible_plan, visible_plan
    assert "workflow_tags_gin" in tag_plan, tag_plan
    assert "Seq Scan on workflows_workflow" not in tag_plan, tag_plan
