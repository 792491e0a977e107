"""ASGI entry point: Django for HTTP, Channels for the dashboard WebSocket."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application

if not settings.configured:
    # A process that serves this application pools its PostgreSQL connections: under ASGI each
    # request runs on a thread of its own, so per-thread persistent connections are never
    # reused (settings.py, DATABASE_POOL). Not when another process (tests) imports it late.
    os.environ.setdefault("DATABASE_POOL", "1")

# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboards.consumers import WebSocketOutageGuard  # noqa: E402
from dashboards.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WebSocketOutageGuard(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
