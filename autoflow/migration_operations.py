"""Migration operations shared by the apps' migrations."""

from __future__ import annotations

from django.db import migrations, models


def drop_covered_foreign_key_index(
    app_label: str, model_name: str, name: str, to: str, related_name: str, index: str
) -> migrations.SeparateDatabaseAndState:
    """Make a cascading foreign key `db_index=False` where a composite index leads with its
    column, dropping only its own index.

    Django's `AlterField` would also drop and re-add the foreign key constraint, which
    re-checks every row of the table under lock while an upgrade runs. `index` is the name
    Django gave it, the same on every backend; the table is the model's default one.
    """
    table, column = f"{app_label}_{model_name}", f"{name}_id"
    field = models.ForeignKey(
        db_index=False, on_delete=models.CASCADE, related_name=related_name, to=to
    )
    return migrations.SeparateDatabaseAndState(
        database_operations=[
            migrations.RunSQL(
                f'DROP INDEX IF EXISTS "{index}"',
                reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")',
            )
        ],
        state_operations=[migrations.AlterField(model_name=model_name, name=name, field=field)],
    )
