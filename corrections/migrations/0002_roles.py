from django.db import migrations

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF, grant_permissions

# What each role may see of corrections and count sheets; what they may *do* is governed by
# inventory_ops.correct_stock / approve_correction / import_counts (migration 0003 there).
ROLE_PERMISSIONS = {
    MANAGERS: ["corrections.view_correction", "corrections.view_countsheet"],
    STOCK_STAFF: ["corrections.view_correction", "corrections.view_countsheet"],
    ON_CALL: ["corrections.view_correction"],
}


def grant(apps, schema_editor):
    grant_permissions(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("corrections", "0001_initial"),
        ("inventory_ops", "0003_roles"),
    ]
    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
