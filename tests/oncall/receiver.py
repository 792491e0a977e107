"""A real HTTP server in a thread, for notification tests: it records every POST it gets and
answers each with the next status of a script (the last one repeats)."""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: dict
    # The bytes as sent (a signature covers them) and the headers looked up case-insensitively,
    # as a web framework's request does.
    raw: bytes = b""
    http_headers: object = None


class Receiver:
    def __init__(self, statuses=(200,), *, delay: float = 0.0):
        self.statuses = list(statuses)
        self.delay = delay
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = json.loads(raw or b"null")
                received = Received(self.path, dict(self.headers), body, raw, self.headers)
                with receiver._lock:
                    receiver.received.append(received)
                    index = len(receiver.received) - 1
                    status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                time.sleep(receiver.delay)
                answer = b"ok" if status < 400 else b"receiver is down"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/oncall"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict]:
        with self._lock:
            return [request.body for request in self.received]

    def wait_for(self, count: int, timeout: float = 30) -> list[dict]:
        """Wait until `count` requests arrived; return their bodies."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.received)} request(s) of {count} arrived in {timeout}s"
            )
            time.sleep(0.05)
        return self.bodies()
