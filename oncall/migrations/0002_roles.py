from django.db import migrations

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF, grant_permissions

# Who sees and edits alerts, rules and runbooks. Acknowledging/resolving an alert is
# oncall.change_alert; running a remediation is inventory_ops.run_remediation (0003 there).
ROLE_PERMISSIONS = {
    MANAGERS: [
        "oncall.view_alert",
        "oncall.view_alertrule",
        "oncall.add_alertrule",
        "oncall.change_alertrule",
        "oncall.view_runbook",
        "oncall.view_runbookversion",
        "oncall.view_remediationaction",
    ],
    ON_CALL: [
        "oncall.view_alert",
        "oncall.change_alert",
        "oncall.view_alertrule",
        "oncall.add_alertrule",
        "oncall.change_alertrule",
        "oncall.delete_alertrule",
        "oncall.view_runbook",
        "oncall.add_runbook",
        "oncall.change_runbook",
        "oncall.view_runbookversion",
        "oncall.view_remediationaction",
    ],
    STOCK_STAFF: ["oncall.view_runbook"],
}


def grant(apps, schema_editor):
    grant_permissions(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("oncall", "0001_initial"),
        ("inventory_ops", "0003_roles"),
    ]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
