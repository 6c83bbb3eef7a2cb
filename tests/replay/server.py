"""What every replay server shares: a websocket server and an HTTP server on local ports, each in a thread of
its own, driven by plain method calls from tests, with scripted HTTP answers (errors, Retry-After, slowness).

A replay subclasses ReplayServer and provides `_serve_ws(conn)` (one websocket connection), `_answer(path)`
(the normal HTTP answer: status, headers, body) and `open_connections()`."""

import asyncio
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from websockets.asyncio.server import serve


@dataclass
class HttpScript:
    """Answers to inject before the normal ones, and slow answers.

    `queued`: (status, headers, body) for the next requests, whatever their path, consumed in order.
    `scripted`: the same, per path fragment (e.g. "/transactions/"), consumed in order by matching requests.
    `delays`: [fragment, seconds, quick] - a matching request is answered after `seconds`, once `quick`
    matching ones were answered at once (a hanging endpoint: a delay longer than the test).
    """

    queued: list[tuple[int, dict, str]] = field(default_factory=list)
    scripted: dict[str, list[tuple[int, dict, str]]] = field(default_factory=dict)
    delays: list[list] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def script(self, fragment: str, *answers: tuple[int, dict, str]) -> None:
        self.scripted.setdefault(fragment, []).extend(answers)

    def slow(self, fragment: str, seconds: float, quick: int = 0) -> None:
        self.delays.append([fragment, seconds, quick])

    def next_answer(self, path: str) -> tuple[int, dict, str] | None:
        if self.queued:
            return self.queued.pop(0)
        for fragment, answers in self.scripted.items():
            if fragment in path and answers:
                return answers.pop(0)
        return None

    def delay_s(self, path: str) -> float:
        for rule in self.delays:
            if rule[0] in path:
                if rule[2] > 0:
                    rule[2] -= 1
                    return 0.0
                return rule[1]
        return 0.0


class ReplayServer:
    rest_path = ""  # the REST API's base path on the HTTP server

    def __init__(self):
        self.http = HttpScript()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, daemon=True)
        self._http_server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._http_thread = threading.Thread(target=self._http_server.serve_forever, daemon=True)
        self._closing = threading.Event()  # ends slow answers when the replay stops

    def __enter__(self):
        self._thread.start()
        self._http_thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._closing.set()
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._http_server.shutdown()
        self._http_server.server_close()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._http_server.server_address[1]}{self.rest_path}"

    def open_connections(self) -> list:
        raise NotImplementedError

    def subscribed(self, name: str) -> int:
        """How many open connections are subscribed to `name` (a pair, product or channel, as the replay names it)."""
        raise NotImplementedError

    def wait_subscribed(self, name: str, connections: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.subscribed(name) < connections:
            if time.monotonic() > deadline:
                raise AssertionError(f"no subscription to {name} within {timeout} s")
            time.sleep(0.02)

    async def _serve_ws(self, conn) -> None:
        raise NotImplementedError

    def _answer(self, raw_path: str) -> tuple[int, dict, str]:
        raise NotImplementedError

    def _seen(self, request: BaseHTTPRequestHandler) -> None:
        """Told of every HTTP request before it is answered (its headers: an API key); nothing by default."""

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._ws_server = await serve(self._serve_ws, "127.0.0.1", 0, ping_interval=None)
        self._ws_port = self._ws_server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._ws_server.close()
        for conn in list(self.open_connections()):
            conn.transport.abort()

    def _call(self, coroutine, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def drop_connections(self) -> None:
        async def drop():
            for conn in list(self.open_connections()):
                conn.transport.abort()

        self._call(drop())

    def _handler_class(self):
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - the stdlib's name
                replay.http.requests.append(self.path)
                replay._seen(self)
                delay = replay.http.delay_s(self.path)
                if delay and replay._closing.wait(delay):
                    return  # the replay stops: never answered, as a hanging server
                scripted = replay.http.next_answer(self.path)
                status, headers, body = scripted or replay._answer(self.path)
                payload = body.encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
