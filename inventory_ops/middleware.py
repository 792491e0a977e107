from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware

# Paths that answer without a session: the JSON API authenticates each request itself (feed
# token or session) and must answer 401 in JSON rather than redirect to a login page; health
# and readiness probes and the metrics scrape come from machines, not people.
DEFAULT_LOGIN_EXEMPT_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")


class PagesRequireLoginMiddleware(LoginRequiredMiddleware):
    """Require a logged-in user for every page, except machine-facing paths."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        prefixes = getattr(settings, "LOGIN_EXEMPT_PATH_PREFIXES", DEFAULT_LOGIN_EXEMPT_PREFIXES)
        if request.path_info.startswith(tuple(prefixes)):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
