"""The three roles of docs/roles.md as Django groups, and what each may do.

Each app grants its permissions to these groups in its own data migration, with
`grant_permissions` and a dict frozen in that migration (so history never changes).
"""

MANAGERS = "managers"
STOCK_STAFF = "stock-staff"
ON_CALL = "on-call"
ROLES = (MANAGERS, STOCK_STAFF, ON_CALL)


def grant_permissions(apps, grants: dict[str, list[str]]) -> None:
    """Create the groups if needed and give them the named permissions (for data migrations).

    Permissions are normally created after all migrations (post_migrate); create them now for
    every installed app so a data migration can use them on a fresh database.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, names in grants.items():
        group, _ = Group.objects.get_or_create(name=role)
        for name in names:
            app_label, codename = name.split(".")
            permission = Permission.objects.get(
                content_type__app_label=app_label, codename=codename
            )
            group.permissions.add(permission)
