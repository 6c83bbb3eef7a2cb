"""A deadline for each websocket receive, kept by one timer per connection.

`asyncio.timeout` around every receive schedules and cancels a timer per message, a large share of a busy
stream's cost. Here the receive in progress only records its deadline; the connection's one timer is moved
when it fires early (messages kept coming), so a stream of messages costs no timer work at all. Past its
deadline the receive is cancelled as `asyncio.timeout` does it: a cancel from anywhere else still wins.
"""

import asyncio


class Watchdog:
    def __init__(self):
        self._deadline: float | None = None  # loop time; None while no receive is in progress
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._expired = False

    def start(self, timeout_s: float) -> None:
        """A receive begins, to end within `timeout_s`; the caller calls stop() however it ends."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout_s
        self._task = asyncio.current_task()
        if self._handle is None or self._handle.when() > self._deadline:
            self.close()
            self._handle = loop.call_at(self._deadline, self._fire)

    def stop(self) -> None:
        self._deadline = None

    def expired(self) -> bool:
        """Called on CancelledError: True when the cancel was this watchdog's alone (the receive timed out)."""
        if not self._expired:
            return False
        self._expired = False
        return self._task.uncancel() == 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._deadline is None:
            return  # no receive in progress: the next one schedules the timer again
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._handle = loop.call_at(self._deadline, self._fire)
            return
        self._expired = True
        self._task.cancel()
