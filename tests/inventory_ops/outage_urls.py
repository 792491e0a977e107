"""Views that hit an outage, mounted by tests/inventory_ops/test_outages.py only."""

from django.db import OperationalError
from django.urls import path
from redis.exceptions import ConnectionError as RedisConnectionError


def database_away(request):
    raise OperationalError("connection to server at 127.0.0.1, port 5432 failed")


def redis_away(request):
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def bug(request):
    raise ValueError("a bug, not an outage")


# As in production (inventory_ops/urls.py): what reaches the 500 handler is answered by ours.
handler500 = "inventory_ops.views.server_error"

urlpatterns = [
    path("page/database", database_away),
    path("page/redis", redis_away),
    path("page/bug", bug),
    path("api/database", database_away),
]
