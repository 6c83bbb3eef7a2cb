"""A local Bitstamp websocket that pushes trades as fast as the client takes them, or at a steady rate.

Messages are encoded before the push (a burst) or from a template (a steady feed), so the pusher spends as little
of the shared CPU as it can; TCP back-pressure (websockets waits for the socket to drain) sets the pace of a burst.
Subscribes and heartbeats are answered as Bitstamp does.
"""

import asyncio
import json
import threading
import time
from collections.abc import Iterable, Iterator

from websockets.asyncio.server import serve

TEMPLATE = (
    '{"data": {"id": %d, "timestamp": "%d", "amount": %s, "amount_str": "%s", "price": %s, "price_str": "%s", '
    '"type": %d, "microtimestamp": "%d", "buy_order_id": 1443875737346049, "sell_order_id": 1443875731320832}, '
    '"channel": "live_trades_%s", "event": "trade"}'
)


def trade_message(symbol: str, trade_id: int, price: str, amount: str, side: int, micros: int) -> str:
    return TEMPLATE % (trade_id, micros // 1_000_000, amount, amount, price, price, side, micros, symbol)


def burst(symbol: str, count: int, first_id: int, start_us: int, step_us: int = 10) -> Iterator[str]:
    """`count` trades of one pair, ids and times rising (so the last one stored is the newest); built as they
    are taken, so a million of them never sit in memory."""
    for i in range(count):
        price, amount = f"{43000 + i % 1000}.{i % 100:02d}", f"0.{i % 99999 + 1:08d}"
        yield trade_message(symbol, first_id + i, price, amount, i % 2, start_us + i * step_us)


class Pusher:
    def __init__(self):
        self.subscribed: set[str] = set()
        self.connections: list = []
        self.sent_at: dict[int, float] = {}  # trade id -> perf_counter when sent (every `sample_every`th)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-pusher")
        self._ready = threading.Event()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        async def shutdown():
            self._server.close()
            for conn in list(self.connections):
                conn.transport.abort()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start():
            self._server = await serve(self._serve, "127.0.0.1", 0, ping_interval=None, max_queue=None)
            self._port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, conn) -> None:
        self.connections.append(conn)
        try:
            async for message in conn:
                request = json.loads(message)
                event, channel = request.get("event"), (request.get("data") or {}).get("channel", "")
                if event == "bts:subscribe":
                    await conn.send(
                        json.dumps({"event": "bts:subscription_succeeded", "channel": channel, "data": {}})
                    )
                    self.subscribed.add(channel.removeprefix("live_trades_"))
                elif event == "bts:heartbeat":
                    await conn.send(
                        json.dumps({"event": "bts:heartbeat", "channel": "", "data": {"status": "success"}})
                    )
        except Exception:  # noqa: BLE001 - the collector went away: normal at the end of a run
            pass
        finally:
            self.connections.remove(conn)

    def wait_subscribed(self, symbols: set[str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not symbols <= self.subscribed:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not subscribe to {sorted(symbols - self.subscribed)}")
            time.sleep(0.05)

    def push(self, messages: Iterable[str], first_id: int, sample_every: int = 100) -> float:
        """Send every message, in order, as fast as the connection takes them; returns the seconds it took."""

        async def send_all() -> float:
            conn = self.connections[-1]
            started = time.perf_counter()
            for index, message in enumerate(messages):
                if index % sample_every == 0:
                    self.sent_at[first_id + index] = time.perf_counter()
                await conn.send(message)
            return time.perf_counter() - started

        return asyncio.run_coroutine_threadsafe(send_all(), self._loop).result()

    def feed(self, symbols: list[str], per_second: int, seconds: float, first_id: int) -> int:
        """`per_second` trades of each pair every second for `seconds`, stamped now, in ticks of 0.1 s."""

        async def steady() -> int:
            conn = self.connections[-1]
            per_tick, sent, tick = per_second // 10, 0, 0
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                micros = time.time_ns() // 1000
                for symbol in symbols:
                    for _ in range(per_tick):
                        trade_id = first_id + sent
                        await conn.send(
                            trade_message(
                                symbol, trade_id, f"{43000 + sent % 1000}.12", "0.01000000", sent % 2, micros
                            )
                        )
                        sent += 1
                tick += 1
                await asyncio.sleep(max(0.0, started + tick * 0.1 - time.monotonic()))
            return sent

        return asyncio.run_coroutine_threadsafe(steady(), self._loop).result()
