from django.db import migrations

from core.roles import MANAGERS, ON_CALL, grant_permissions

# "app_label.codename" per role: on-call works the dead letters (replay and discard need
# inventory_ops.run_remediation, granted in inventory_ops 0003); managers may look.
INGEST_PERMISSIONS = {
    MANAGERS: [
        "ingest.view_ingestbatch",
        "ingest.view_deadletter",
        "ingest.view_heldevent",
    ],
    ON_CALL: [
        "ingest.view_ingestbatch",
        "ingest.view_deadletter",
        "ingest.view_heldevent",
    ],
}


def grant(apps, schema_editor):
    grant_permissions(apps, INGEST_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0002_batches_events_dead_letters"),
        ("inventory_ops", "0003_roles"),
    ]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
