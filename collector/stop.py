"""A stop that ends every wait on the network at once, from any thread.

REST calls run on worker threads (requests is blocking); a SIGTERM must not wait for a slow or hanging answer.
Every such wait goes through a StopSignal: a sleep returns early, and a blocking call is left to finish on
its own daemon thread while the caller gets `Stopped` straight away, so nothing it would have produced is
handed on after the stop.
"""

import threading


class Stopped(Exception):
    """The work was interrupted by a stop; nothing more is produced."""


class StopSignal:
    def __init__(self):
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._waiters: set[threading.Event] = set()

    def set(self) -> None:
        with self._lock:
            self._stopped.set()
            for waiter in self._waiters:
                waiter.set()

    def is_set(self) -> bool:
        return self._stopped.is_set()

    def check(self) -> None:
        if self._stopped.is_set():
            raise Stopped

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise Stopped as soon as a stop comes."""
        if self._stopped.wait(max(0.0, seconds)):
            raise Stopped

    def call(self, blocking, *args, **kwargs):
        """blocking(*args, **kwargs) on a daemon thread; its result, or Stopped as soon as a stop comes."""
        self.check()
        done = threading.Event()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["value"] = blocking(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                outcome["error"] = exc
            finally:
                done.set()

        with self._lock:
            if self._stopped.is_set():
                raise Stopped
            self._waiters.add(done)
        try:
            threading.Thread(target=work, name="network-call", daemon=True).start()
            done.wait()
        finally:
            with self._lock:
                self._waiters.discard(done)
        if "value" not in outcome and "error" not in outcome:
            raise Stopped  # woken by the stop; the abandoned call ends on its own thread
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]
