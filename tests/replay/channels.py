"""A replay whose websocket clients subscribe to channels: which connection is subscribed to what, acks that can be
held back, trades kept for REST, and messages sent to a channel's subscribers.

An exchange's replay subclasses ChannelReplay, registers each connection with `_connected`/`_disconnected` in its
`_serve_ws`, and names a test's short name (a symbol) as its channel with `channel(name)`."""

import asyncio
import contextlib
import threading

from websockets.exceptions import ConnectionClosed

from tests.replay.server import ReplayServer


class ChannelReplay(ReplayServer):
    def __init__(self, first_trade_id: int):
        super().__init__()
        self.trades: list = []  # every trade published, delivered or not: what REST serves
        self.connections: list = []
        self.subscriptions: dict[object, set[str]] = {}  # connection -> its channels
        self.connection_numbers: dict[object, int] = {}  # 1 for the first connection ever, then 2, ...
        self._next_id = first_trade_id
        self._lock = threading.Lock()

    def channel(self, name: str) -> str:
        return name

    def open_connections(self) -> list:
        return self.connections

    async def _start(self) -> None:
        self._acks_released = asyncio.Event()
        self._acks_released.set()
        await super()._start()

    def _connected(self, conn) -> int:
        """A connection starts: its number."""
        self.connections.append(conn)
        self.subscriptions[conn] = set()
        self.connection_numbers[conn] = len(self.connection_numbers) + 1
        return self.connection_numbers[conn]

    def _disconnected(self, conn) -> None:
        self.connections.remove(conn)
        self.subscriptions.pop(conn, None)

    def _keep(self, make_trade, trade_id: int | None):
        """A trade happens: `make_trade(id)`, with `trade_id` or the next one, kept for REST."""
        with self._lock:
            if trade_id is None:
                trade_id, self._next_id = self._next_id, self._next_id + 1
            trade = make_trade(trade_id)
            self.trades.append(trade)
        return trade

    def subscribed(self, name: str) -> int:
        """How many open connections are subscribed to this channel."""
        channel = self.channel(name)
        return sum(channel in channels for channels in list(self.subscriptions.values()))

    def send_raw(self, text: str, name: str | None = None) -> None:
        """Send a message as is to every connection (subscribed to channel `name`, if given)."""
        channel = None if name is None else self.channel(name)

        async def send():
            for conn, channels in list(self.subscriptions.items()):
                if channel is None or channel in channels:
                    with contextlib.suppress(ConnectionClosed):  # a client that just left misses it
                        await conn.send(text)

        self._call(send())

    def connection_number(self, index: int = -1) -> int:
        """The number of an open connection (the newest by default)."""
        return self.connection_numbers[self.connections[index]]

    def subscribed_on(self, number: int) -> set[str]:
        """The channels connection `number` is subscribed to now (empty once it is closed)."""
        for conn, channels in list(self.subscriptions.items()):
            if self.connection_numbers.get(conn) == number:
                return set(channels)
        return set()

    def hold_acks(self) -> None:
        """Subscribes are received and logged, but neither acknowledged nor active until release_acks()."""
        self._loop.call_soon_threadsafe(self._acks_released.clear)

    def release_acks(self) -> None:
        self._loop.call_soon_threadsafe(self._acks_released.set)

    def refuse_connections(self) -> None:
        """The websocket server goes away: open connections drop and new ones are refused."""
        self._call(self._shutdown())

    def freeze(self) -> None:
        """Keep connections open but stop reading them: no pong, no acks, no trades (a dead link)."""

        async def freeze():
            for conn in list(self.connections):
                conn.transport.pause_reading()

        self._call(freeze())
