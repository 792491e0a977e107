from django.db import migrations

from core.roles import MANAGERS, ON_CALL, grant_permissions

# Managers read the SLO targets; on-call, who is paged on their budgets, also sets them.
ROLE_PERMISSIONS = {
    MANAGERS: ["slos.view_slotarget"],
    ON_CALL: ["slos.view_slotarget", "slos.change_slotarget"],
}


def grant(apps, schema_editor):
    grant_permissions(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("slos", "0003_span_start_index"), ("inventory_ops", "0003_roles")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
