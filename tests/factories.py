"""Typed factory_boy factories for the models tests need."""

from __future__ import annotations

from typing import Any

import factory

from accounts.models import User
from workflows.models import Workflow, WorkflowVersion

DEFAULT_PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    is_active = True

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **kwargs: Any) -> User:
        password = kwargs.pop("password", DEFAULT_PASSWORD)
        manager = cls._get_manager(model_class)
        return manager.create_user(*args, password=password, **kwargs)


def simple_graph(message: str = "hi") -> dict[str, Any]:
    """A valid two-node graph: a manual trigger feeding a debug node."""
    return {
        "nodes": [
            {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
            {"id": "log", "type": "debug", "params": {"message": message}},
        ],
        "edges": [{"source": "t", "target": "log"}],
    }


class WorkflowFactory(factory.django.DjangoModelFactory[Workflow]):
    """A stored workflow with its version row (the graph is not re-validated)."""

    class Meta:
        model = Workflow

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Workflow {n}")
    description = ""
    graph = factory.LazyFunction(simple_graph)
    tags = factory.LazyFunction(list)
    is_public = False

    @classmethod
    def _create(cls, model_class: type[Workflow], *args: Any, **kwargs: Any) -> Workflow:
        workflow = super()._create(model_class, *args, **kwargs)
        WorkflowVersion.objects.create(
            workflow=workflow,
            version=workflow.version,
            name=workflow.name,
            description=workflow.description,
            graph=workflow.graph,
            tags=workflow.tags,
            created_by=workflow.owner,
        )
        return workflow
