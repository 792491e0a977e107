from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware

from core.outages import OUTAGE_ERRORS, outage_response

# Paths that answer without a session: the JSON API authenticates each request itself (feed
# token or session) and must answer 401 in JSON rather than redirect to a login page; health
# and readiness probes and the metrics scrape come from machines, not people.
DEFAULT_LOGIN_EXEMPT_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")


class PagesRequireLoginMiddleware(LoginRequiredMiddleware):
    """Require a logged-in user for every page, except machine-facing paths."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if _login_exempt(request):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


def _login_exempt(request) -> bool:
    prefixes = getattr(settings, "LOGIN_EXEMPT_PATH_PREFIXES", DEFAULT_LOGIN_EXEMPT_PREFIXES)
    return request.path_info.startswith(tuple(prefixes))


class DependencyOutageMiddleware:
    """Answer 503 instead of 500 while the database or Redis is away (core.outages).

    Between AuthenticationMiddleware and the login check: the session and the user are read
    there, outside any view, where `process_exception` would not see the error.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if _login_exempt(request):
            return None  # probes and the API answer for themselves, without a session
        try:
            request.user.is_authenticated  # noqa: B018 (reads the session and the user)
        except OUTAGE_ERRORS as error:
            return outage_response(request, error)
        return None

    def process_exception(self, request, exception):
        if isinstance(exception, OUTAGE_ERRORS):
            return outage_response(request, exception)
        return None
