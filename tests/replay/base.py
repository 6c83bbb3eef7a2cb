"""What every replayed exchange shares: a websocket server and an HTTP server on loopback, each on a thread of its
own, driven by tests with plain method calls; per connection its subscribed channels; scripted HTTP answers.

An exchange's replay subclasses ReplayServer with its websocket protocol (`_serve_ws`), its REST answers
(`_answer`) and the name of a channel (`channel`)."""

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


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
    def __init__(self, first_trade_id: int):
        self.trades: list = []  # every trade published, delivered or not: what REST serves
        self._next_id = first_trade_id
        self.connections: list = []
        self.subscriptions: dict[object, set[str]] = {}  # connection -> its subscribed channels
        self.connection_numbers: dict[object, int] = {}  # 1 for the first connection ever, then 2, ...
        self.http = HttpScript()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, daemon=True)
        self._http_server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._http_thread = threading.Thread(target=self._http_server.serve_forever, daemon=True)
        self._closing = threading.Event()  # ends slow answers when the replay stops

    # --- what an exchange's replay provides ----------------------------------------------------------------

    async def _serve_ws(self, conn) -> None:
        raise NotImplementedError

    def _answer(self, path: str) -> tuple[int, dict, str]:
        raise NotImplementedError

    def channel(self, name: str) -> str:
        """The channel a test names by its short name (a symbol, say)."""
        return name

    def _keep(self, make_trade, trade_id: int | None):
        """A trade happens: `make_trade(id)`, with `trade_id` or the next one, kept for REST."""
        with self._lock:
            if trade_id is None:
                trade_id, self._next_id = self._next_id, self._next_id + 1
            trade = make_trade(trade_id)
            self.trades.append(trade)
        return trade

    # --- life --------------------------------------------------------------------------------------------

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
    def http_root(self) -> str:
        return f"http://127.0.0.1:{self._http_server.server_address[1]}"

    @property
    def ws_root(self) -> str:
        return f"ws://127.0.0.1:{self._ws_port}"

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._acks_released = asyncio.Event()
        self._acks_released.set()
        self._ws_server = await serve(self._serve_ws, "127.0.0.1", 0, ping_interval=None)
        self._ws_port = self._ws_server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._ws_server.close()
        for conn in list(self.connections):
            conn.transport.abort()

    def _call(self, coroutine, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # --- websocket -----------------------------------------------------------------------------------------

    def _connected(self, conn) -> int:
        """A connection starts: its number."""
        self.connections.append(conn)
        self.subscriptions[conn] = set()
        self.connection_numbers[conn] = len(self.connection_numbers) + 1
        return self.connection_numbers[conn]

    def _disconnected(self, conn) -> None:
        self.connections.remove(conn)
        self.subscriptions.pop(conn, None)

    def subscribed(self, name: str) -> int:
        """How many open connections are subscribed to this channel."""
        channel = self.channel(name)
        return sum(channel in channels for channels in list(self.subscriptions.values()))

    def wait_subscribed(self, name: str, connections: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.subscribed(name) < connections:
            if time.monotonic() > deadline:
                raise AssertionError(f"no subscription to {name} within {timeout} s")
            time.sleep(0.02)

    def connection_number(self, index: int = -1) -> int:
        """The number of an open connection (the newest by default)."""
        return self.connection_numbers[self.connections[index]]

    def subscribed_on(self, number: int) -> set[str]:
        """The channels connection `number` is subscribed to now (empty once it is closed)."""
        for conn, channels in list(self.subscriptions.items()):
            if self.connection_numbers.get(conn) == number:
                return set(channels)
        return set()

    def send_raw(self, text: str, name: str | None = None) -> None:
        """Send a message as is to every connection (subscribed to channel `name`, if given)."""
        channel = None if name is None else self.channel(name)

        async def send():
            for conn, channels in list(self.subscriptions.items()):
                if channel is None or channel in channels:
                    with contextlib.suppress(ConnectionClosed):  # a client that just left misses it
                        await conn.send(text)

        self._call(send())

    def hold_acks(self) -> None:
        """Subscribes are received and logged, but neither acknowledged nor active until release_acks()."""
        self._loop.call_soon_threadsafe(self._acks_released.clear)

    def release_acks(self) -> None:
        self._loop.call_soon_threadsafe(self._acks_released.set)

    def drop_connections(self) -> None:
        async def drop():
            for conn in list(self.connections):
                conn.transport.abort()

        self._call(drop())

    def refuse_connections(self) -> None:
        """The websocket server goes away: open connections drop and new ones are refused."""
        self._call(self._shutdown())

    def freeze(self) -> None:
        """Keep connections open but stop reading them: no pong, no acks, no trades (a dead link)."""

        async def freeze():
            for conn in list(self.connections):
                conn.transport.pause_reading()

        self._call(freeze())

    # --- HTTP ------------------------------------------------------------------------------------------------

    def _respond(self, path: str) -> tuple[int, dict, str] | None:
        """The answer to a GET: scripted, else the exchange's own; None while the replay stops (a hanging
        server never answers)."""
        delay = self.http.delay_s(path)
        if delay and self._closing.wait(delay):
            return None
        return self.http.next_answer(path) or self._answer(path)

    def _handler_class(self):
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - the stdlib's name
                replay.http.requests.append(self.path)
                answer = replay._respond(self.path)
                if answer is None:
                    return
                status, headers, body = answer
                payload = body.encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
