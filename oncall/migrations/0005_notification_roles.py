from django.db import migrations

from core.roles import MANAGERS, ON_CALL, grant_permissions

# On-call configures where notifications go and reads the delivery log; managers read both.
ROLE_PERMISSIONS = {
    MANAGERS: ["oncall.view_notificationchannel", "oncall.view_notificationdelivery"],
    ON_CALL: [
        "oncall.view_notificationchannel",
        "oncall.add_notificationchannel",
        "oncall.change_notificationchannel",
        "oncall.delete_notificationchannel",
        "oncall.view_notificationdelivery",
    ],
}


def grant(apps, schema_editor):
    grant_permissions(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("oncall", "0004_notification_channels")]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
