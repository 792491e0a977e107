from django.db import migrations

from core.roles import MANAGERS, ON_CALL, grant_permissions

# On-call silences alerts and ends silences; managers see them.
ROLE_PERMISSIONS = {
    MANAGERS: ["oncall.view_silence"],
    ON_CALL: ["oncall.view_silence", "oncall.add_silence", "oncall.change_silence"],
}


def grant(apps, schema_editor):
    grant_permissions(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("oncall", "0006_silences")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
