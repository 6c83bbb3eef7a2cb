"""The HTTP side every replay server shares: scripted answers first (HttpScript), then the replay's own."""

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler


def json_handler(
    script,
    answer: Callable[[str], tuple[int, dict, str]],
    closing: threading.Event,
    seen: Callable[[BaseHTTPRequestHandler], None] = lambda request: None,
) -> type[BaseHTTPRequestHandler]:
    """A handler class answering GET with `script`'s next answer for the path, else `answer(path)`; `seen` is
    told of every request first. A slow answer ends unanswered when `closing` is set (a hanging server)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - the stdlib's name
            script.requests.append(self.path)
            seen(self)
            delay = script.delay_s(self.path)
            if delay and closing.wait(delay):
                return
            status, headers, body = script.next_answer(self.path) or answer(self.path)
            payload = body.encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
