"""A dashboard as a browser holds it: one WebSocket, reconnected as static/js/dashboard.js does
(4503 "server unavailable": retry in a second; any other drop: retry), frames kept in order."""

import json
import threading
import time

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from core.outages import CLOSE_UNAVAILABLE


class LiveDashboard:
    def __init__(self, base_url: str, session_key: str, *, path: str = "/ws/dashboard/") -> None:
        self.url = base_url.replace("http://", "ws://") + path
        self.headers = {"Cookie": f"sessionid={session_key}", "Origin": base_url}
        self.frames: list[tuple[float, dict]] = []  # (monotonic time, frame)
        self.closes: list[tuple[float, int | None]] = []  # (monotonic time, close code)
        self.handshake_failures: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-dashboard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.url, additional_headers=self.headers, open_timeout=10) as socket:
                    while not self._stop.is_set():
                        try:
                            text = socket.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        self.frames.append((time.monotonic(), json.loads(text)))
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                self.closes.append((time.monotonic(), code))
                time.sleep(1 if code == CLOSE_UNAVAILABLE else 0.5)
            except (InvalidStatus, InvalidHandshake, OSError, TimeoutError) as error:
                # The web process restarting refuses connections (the page retries too).
                self.handshake_failures.append(repr(error))
                time.sleep(0.5)
            except Exception as error:  # anything else: a browser would reconnect too
                self.errors.append(repr(error))
                time.sleep(0.5)

    def views_since(self, since: float) -> list[dict]:
        return [frame for at, frame in self.frames if at >= since and frame["type"] == "view"]

    def closed_unavailable_since(self, since: float) -> bool:
        return any(at >= since and code == CLOSE_UNAVAILABLE for at, code in self.closes)

    def close(self) -> None:
        self._stop.set()
        # Longer than a connection attempt's open_timeout, which the reader may be inside.
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "the dashboard WebSocket reader is stuck"
