"""The per-connection receive deadline (collector/watchdog.py): times a receive out as asyncio.timeout would, with one
timer per connection, and never swallows a cancel that came from elsewhere."""

import asyncio
import time

import pytest

from collector.watchdog import Watchdog


async def _receive(watchdog: Watchdog, timeout_s: float, arrives: asyncio.Future) -> str:
    watchdog.start(timeout_s)
    try:
        return await arrives
    except asyncio.CancelledError:
        if not watchdog.expired():
            raise
        return "timed out"
    finally:
        watchdog.stop()


def test_a_receive_past_its_own_deadline_times_out_and_one_in_time_does_not():
    async def scenario():
        loop, watchdog = asyncio.get_running_loop(), Watchdog()
        for _ in range(100):  # messages keep coming: each receive ends well inside its deadline
            arrived = loop.create_future()
            loop.call_soon(arrived.set_result, "message")
            assert await _receive(watchdog, 0.2, arrived) == "message"
        await asyncio.sleep(0.15)  # the timer set by the first receive is now due before the next deadline
        started = time.monotonic()
        assert await _receive(watchdog, 0.2, loop.create_future()) == "timed out"
        assert 0.19 <= time.monotonic() - started < 1.0  # its own deadline, not the first receive's
        watchdog.close()

    asyncio.run(scenario())


def test_a_shorter_deadline_moves_the_timer_earlier():
    async def scenario():
        loop, watchdog = asyncio.get_running_loop(), Watchdog()
        arrived = loop.create_future()
        loop.call_soon(arrived.set_result, "message")
        await _receive(watchdog, 30.0, arrived)  # the timer now waits 30 s
        started = time.monotonic()
        assert await _receive(watchdog, 0.1, loop.create_future()) == "timed out"
        assert time.monotonic() - started < 1.0
        watchdog.close()

    asyncio.run(scenario())


def test_a_cancel_from_elsewhere_is_never_taken_for_a_timeout():
    async def scenario():
        loop, watchdog = asyncio.get_running_loop(), Watchdog()
        receiving = asyncio.create_task(_receive(watchdog, 0.05, loop.create_future()))
        await asyncio.sleep(0)
        receiving.cancel()  # e.g. a stop, before the deadline
        with pytest.raises(asyncio.CancelledError):
            await receiving
        # the deadline and a stop land together: the stop still wins
        receiving = asyncio.create_task(_receive(watchdog, 0.05, loop.create_future()))
        await asyncio.sleep(0)
        loop.call_at(loop.time() + 0.05, receiving.cancel)
        with pytest.raises(asyncio.CancelledError):
            await receiving
        assert receiving.cancelled()
        watchdog.close()

    asyncio.run(scenario())
