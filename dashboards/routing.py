"""WebSocket routes, mounted by inventory_ops.asgi."""

from django.urls import path

from dashboards.consumers import DashboardConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
]
