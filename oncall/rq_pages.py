"""django-rq's queue pages at /admin/rq/, for on-call only.

django-rq's own views only ask for `is_staff`, and they requeue, delete and stop jobs: any
staff user (stock staff included) could. Here every page needs the on-call permission
`inventory_ops.run_remediation` as well (403 otherwise), its JSON stats included (like every
page, they need a logged-in user: django-rq's bearer-token access is not used). django-rq's
second copy of these pages inside the admin (`/admin/django_rq/dashboard/`, staff only) is not
mounted: `RQ_SHOW_ADMIN_LINK = False`. Nor are its rq-scheduler and cron pages, which this
project does not use (they answer 500 without those schedulers).

A page for a job, queue or worker that is not there answers 404 (django-rq answers 500 for
some of them).
"""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import re_path
from django_rq.queues import get_queue_by_index
from django_rq.settings import get_queues_list
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns
from rq import Worker
from rq.exceptions import NoSuchJobError

RQ_PAGES_PERMISSION = "inventory_ops.run_remediation"
UNUSED_PAGES = {"scheduler_jobs", "cron_scheduler_detail", "cron_job_detail"}


def _gone_unless_found(queue_index: int | None, worker_key: str | None) -> None:
    if queue_index is not None and not 0 <= queue_index < len(get_queues_list()):
        raise Http404("No such queue.")
    if worker_key is not None:
        connection = get_queue_by_index(queue_index).connection
        try:
            worker = Worker.find_by_key(worker_key, connection=connection)
        except ValueError:  # not a worker's key at all
            worker = None
        if worker is None:
            raise Http404("No such worker: it may have stopped.")


def _on_call_only(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated and not request.user.has_perm(RQ_PAGES_PERMISSION):
            raise PermissionDenied
        _gone_unless_found(kwargs.get("queue_index"), kwargs.get("key"))
        try:
            return view(request, *args, **kwargs)
        except NoSuchJobError:
            raise Http404("No such job: it may have finished, expired or been deleted.") from None

    return wrapper


# For include(...): the same names and namespace as include("django_rq.urls").
urls = (
    [
        # The stats endpoints have no view_wrapper argument: wrap their views here.
        re_path(pattern.pattern.regex.pattern, _on_call_only(pattern.callback), name=pattern.name)
        for pattern in get_api_urlpatterns()
    ]
    + [
        pattern
        for pattern in get_admin_urlpatterns(view_wrapper=_on_call_only)
        if pattern.name not in UNUSED_PAGES
    ],
    "django_rq",
)
