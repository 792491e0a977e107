"""A user allowed to see the dashboards, also in transactional tests.

Transactional tests flush the database between tests, which removes the role groups that a data
migration created (permissions come back: flush re-runs post_migrate). So grant the dashboard
permission to the user directly rather than through a role.
"""

from django.contrib.auth.models import Permission

from tests.builders import user_make


def dashboard_viewer_make(username: str | None = None, **fields):
    user = user_make(username, **fields)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="inventory_ops", codename="view_dashboard")
    )
    return user
