"""The dashboard WebSocket: `/ws/dashboard/?site=<code>&window=<w>`.

Thin on purpose: it checks who is asking and for what, then joins the scope's watchers in this
process's hub (`dashboards.live`), which computes once per scope and sends the frames. Reads
only; never writes to the database.
"""

import json
import time
from importlib import import_module
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import SESSION_KEY

from core.outages import CLOSE_UNAVAILABLE, OUTAGE_ERRORS, UNAVAILABLE_MESSAGE, outage_log
from dashboards.live import hub_get
from dashboards.panels import Scope, window_parse
from kpis.windows import UnknownWindow
from ledger.models import Site

# Close codes in the application range (4000-4999), so a client can tell why it was closed;
# CLOSE_UNAVAILABLE (4503, core.outages): the database or Redis is away, retry.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNKNOWN_SITE = 4404
CLOSE_SIGNED_OUT = 4401
# The page pings every 1.5 s to know its socket is alive; whether its session still exists
# (logged out elsewhere, expired) is read from the session store at most this often.
SESSION_CHECK_S = 5


class DashboardConsumer(AsyncWebsocketConsumer):
    # No channel-layer channel per socket: the hub of this process is the member of the scope's
    # channel-layer group and sends the frames to its sockets itself, so a frame never travels
    # through Redis once per socket (dashboards/live.py).
    channel_layer_alias = "dashboards-no-channel-layer"  # not in CHANNEL_LAYERS: no layer
    scope_watched: Scope | None = None
    session_checked_at = 0.0

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: the handshake is refused with 403
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        site = (query.get("site") or [""])[0] or None
        await self.accept()
        try:
            window = window_parse((query.get("window") or [""])[0])
        except UnknownWindow as error:
            await self._refuse(CLOSE_BAD_REQUEST, str(error))
            return
        if site is not None and not await _site_exists(site):
            await self._refuse(CLOSE_UNKNOWN_SITE, f"unknown site {site!r}")
            return
        self.scope_watched = Scope(site=site, window=window)
        await hub_get().watch(self.scope_watched, self)

    async def _refuse(self, code: int, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "message": message}))
        await self.close(code=code)

    async def disconnect(self, code):
        if self.scope_watched is not None:
            hub_get().unwatch(self.scope_watched, self)

    async def receive(self, text_data=None, bytes_data=None):
        """The stream is server to client; the only message understood is the page's heartbeat
        ({"type": "ping"}), answered with a pong, or with signed_out once the session is gone."""
        if _is_ping(text_data):
            if time.monotonic() - self.session_checked_at >= SESSION_CHECK_S:
                self.session_checked_at = time.monotonic()
                session = self.scope.get("session")
                user = self.scope.get("user")
                if not await _session_current(getattr(session, "session_key", None), user.pk):
                    message = "signed out: the session ended; log in again"
                    await self.send(
                        text_data=json.dumps({"type": "signed_out", "message": message})
                    )
                    await self.close(code=CLOSE_SIGNED_OUT)
                    return
            await self.send(text_data='{"type": "pong"}')
            return
        await self.send(
            text_data=json.dumps(
                {"type": "error", "message": "this socket only sends; nothing to receive"}
            )
        )

    async def frame_send(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def unavailable_close(self) -> None:
        await self._refuse(CLOSE_UNAVAILABLE, UNAVAILABLE_MESSAGE)


class WebSocketOutageGuard:
    """ASGI middleware: a dependency outage while a socket is opened or served (the session and
    the user are read from the database before the consumer runs) closes it with
    CLOSE_UNAVAILABLE, instead of a failed handshake the page cannot explain."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        sent = set()

        async def send_noting(message):
            sent.add(message["type"])
            await send(message)

        try:
            return await self.app(scope, receive, send_noting)
        except OUTAGE_ERRORS as error:
            outage_log(scope.get("path", "websocket"), error)
            if "websocket.close" in sent:
                return None
            if "websocket.accept" not in sent:
                # A close code needs an open socket: closing before accepting is a 403.
                await send({"type": "websocket.accept"})
            frame = json.dumps({"type": "unavailable", "message": UNAVAILABLE_MESSAGE})
            await send({"type": "websocket.send", "text": frame})
            await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})
            return None


def _is_ping(text_data) -> bool:
    try:
        return json.loads(text_data or "").get("type") == "ping"
    except (ValueError, AttributeError):
        return False


@database_sync_to_async
def _session_current(session_key: str | None, user_pk) -> bool:
    """Whether the session this socket opened with still logs in the same user (not logged
    out, not expired)."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return str(store.get(SESSION_KEY)) == str(user_pk)


@database_sync_to_async
def _site_exists(code: str) -> bool:
    return Site.objects.filter(code=code).exists()
