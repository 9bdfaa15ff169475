"""Every foreign key is indexed exactly once: alone, or leading a composite index."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, models

pytestmark = pytest.mark.django_db


def _our_foreign_keys() -> list[tuple[str, str]]:
    """(table, column) of every foreign key on this project's own models."""
    root = Path(settings.BASE_DIR).resolve()
    keys = []
    for config in apps.get_app_configs():
        path = Path(config.path).resolve()
        if root not in path.parents or ".venv" in path.parts:
            continue
        for model in config.get_models():
            for field in model._meta.concrete_fields:
                if isinstance(field, models.ForeignKey):
                    keys.append((model._meta.db_table, str(field.column)))
    return keys


def test_every_foreign_key_leads_one_index_and_has_no_redundant_one_of_its_own():
    keys = _our_foreign_keys()
    assert ("executions_executionlog", "execution_id") in keys  # the walk finds our models
    missing, redundant = [], []
    with connection.cursor() as cursor:
        for table, column in keys:
            constraints = connection.introspection.get_constraints(cursor, table).values()
            leading = [
                c["columns"]
                for c in constraints
                if (c["index"] or c["unique"] or c["primary_key"]) and c["columns"][:1] == [column]
            ]
            if not leading:
                missing.append((table, column))
            elif [column] in leading and len(leading) > 1:
                # A lookup by the key can use the longer index: the short one only costs writes.
                redundant.append((table, column))
    assert missing == []
    assert redundant == []
