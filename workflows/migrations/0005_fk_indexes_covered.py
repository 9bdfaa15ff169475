"""Drop foreign keys' own indexes that a composite index leading with the same column covers."""

from django.conf import settings
from django.db import migrations

from autoflow.migration_operations import drop_covered_foreign_key_index

# model, foreign key, its target, related name, the index it loses (and what covers it)
COVERED = [
    # webhookcall_workflow_at
    ("webhookcall", "workflow", "workflows.workflow", "webhook_calls", "workflows_webhookcall_workflow_id_ef68f34b"),
    # workflow_version_unique
    ("workflowversion", "workflow", "workflows.workflow", "versions", "workflows_workflowversion_workflow_id_bbe86d4b"),
    # credential_owner_created
    ("credential", "owner", settings.AUTH_USER_MODEL, "credentials", "workflows_credential_owner_id_e158082d"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0004_webhookcall_at_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [drop_covered_foreign_key_index("workflows", *row) for row in COVERED]
