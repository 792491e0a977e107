"""WebSocket routes, mounted by inventory_ops.asgi."""

websocket_urlpatterns: list = []
