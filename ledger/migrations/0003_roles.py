from django.db import migrations

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF, grant_permissions

# "app_label.codename" per role. Everyone in a role may see the dashboards.
ROLE_PERMISSIONS = {
    MANAGERS: [
        "inventory_ops.view_dashboard",
        "inventory_ops.approve_correction",
        "inventory_ops.correct_stock",
        "inventory_ops.view_site",
        "inventory_ops.view_sku",
        "inventory_ops.view_sitereorderpoint",
        "inventory_ops.view_stocklevel",
        "inventory_ops.view_movement",
        "ingest.view_feedsource",
    ],
    STOCK_STAFF: [
        "inventory_ops.view_dashboard",
        "inventory_ops.correct_stock",
        "inventory_ops.import_counts",
        "inventory_ops.view_site",
        "inventory_ops.view_sku",
        "inventory_ops.view_stocklevel",
        "inventory_ops.view_movement",
    ],
    ON_CALL: [
        "inventory_ops.view_dashboard",
        "inventory_ops.run_remediation",
        "inventory_ops.view_site",
        "inventory_ops.view_sku",
        "inventory_ops.view_stocklevel",
        "inventory_ops.view_movement",
        "ingest.view_feedsource",
    ],
}


def create_roles(apps, schema_editor):
    grant_permissions(apps, ROLE_PERMISSIONS)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inventory_ops", "0002_movement_append_only"),
        ("ingest", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
