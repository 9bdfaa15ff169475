"""Drop foreign keys' own indexes that a composite index leading with the same column covers.

Each index is one more entry for every version of a row: an execution's row has three per run
(queued, claimed, ended), and a three-node run writes nine log lines and three node runs.
"""

from django.db import migrations

from autoflow.migration_operations import drop_covered_foreign_key_index

# model, foreign key, its target, related name, the index it loses (and what covers it)
COVERED = [
    # execution_workflow_created and execution_workflow_status
    ("execution", "workflow", "workflows.workflow", "executions", "executions_execution_workflow_id_0c141a15"),
    # executionlog_unique_seq
    ("executionlog", "execution", "executions.execution", "logs", "executions_executionlog_execution_id_1e0ead78"),
    # noderun_unique_node
    ("noderun", "execution", "executions.execution", "node_runs", "executions_noderun_execution_id_5ac7429c"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0003_execution_notify_channel"),
        ("workflows", "0005_fk_indexes_covered"),
    ]

    operations = [drop_covered_foreign_key_index("executions", *row) for row in COVERED]
