"""GIN indexes on `tags` and `graph`, on PostgreSQL only.

`jsonb_path_ops` indexes answer the containment operator `@>` the tag filter
(`tags @> '["a", "b"]'`) and graph lookups (`graph @> '{"nodes": [{"type": "trigger"}]}'`)
use. SQLite has no GIN, so the same migration does nothing there.
"""

from typing import Any

from django.db import migrations

INDEXES = {
    "workflow_tags_gin": "tags",
    "workflow_graph_gin": "graph",
}


def create_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON workflows_workflow "
            f"USING gin ({column} jsonb_path_ops)"
        )


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
