"""django-rq's queue pages at /admin/rq/, for on-call only.

django-rq's own views only ask for `is_staff`, and they requeue, delete and stop jobs: any
staff user (stock staff included) could. Here every page needs the on-call permission
`inventory_ops.run_remediation` as well (403 otherwise), its JSON and Prometheus stats included.
A request without a session (a scraper) still meets django-rq's own token check, which refuses
it unless `RQ_API_TOKEN` is set. django-rq's second copy of these pages inside the admin
(`/admin/django_rq/dashboard/`, staff only) is not mounted: `RQ_SHOW_ADMIN_LINK = False`.
"""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.urls import re_path
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

RQ_PAGES_PERMISSION = "inventory_ops.run_remediation"


def _on_call_only(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated and not request.user.has_perm(RQ_PAGES_PERMISSION):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


# For include(...): the same names and namespace as include("django_rq.urls").
urls = (
    [
        # The stats endpoints have no view_wrapper argument: wrap their views here.
        re_path(pattern.pattern.regex.pattern, _on_call_only(pattern.callback), name=pattern.name)
        for pattern in get_api_urlpatterns()
    ]
    + get_admin_urlpatterns(view_wrapper=_on_call_only),
    "django_rq",
)
