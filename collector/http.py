"""HTTP for exchange REST APIs: a rate limit per exchange, retries by error class, exact decimals."""

import logging
import threading
import time
from collections import deque

import requests

from collector.exchanges.base import MessageError, RateLimit, load_json
from collector.health import ExchangeHealth
from collector.retry import Backoff, retry_after_seconds, retry_wait
from collector.stop import StopSignal

log = logging.getLogger(__name__)

BANNED = 418  # Binance: an IP that kept sending after 429s is banned, 2 minutes to 3 days (Retry-After)
BAN_WITHOUT_RETRY_AFTER_S = 120.0  # the shortest ban, when the answer does not say
LONGEST_PAUSE_S = 3 * 86_400.0  # Binance's longest ban: a Retry-After beyond it is taken as it
USED_SHARE_PAUSE = 0.9  # of the exchange's own usage limit: then requests wait for its next minute


class HttpError(Exception):
    """A request that failed for good (4xx, or 5xx/network after every retry)."""

    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s  # what the exchange's last answer asked for, if anything

    @property
    def retryable(self) -> bool:
        """Network errors, 429, a ban (418) and 5xx may pass; another 4xx will not."""
        return self.status is None or self.status in (429, BANNED) or self.status >= 500


class RateLimited(HttpError):
    """The exchange kept answering 429 (or banned us, 418) after every retry: not the same thing as 'no data'."""


class CallWindow:
    """At most `requests` calls in any `per_seconds`, as exchanges count them (CoinGecko: calls a minute). A token
    bucket full at the start would let a whole budget through and then refill: up to twice it in one window.
    Each call reserves its slot under the lock and waits for it outside; thread-safe."""

    def __init__(self, limit: RateLimit, clock=time.monotonic, sleep=time.sleep):
        self.per_seconds = limit.per_seconds
        self.slots: deque[float] = deque(maxlen=limit.requests)  # the latest `requests` calls' start times
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self.clock()
            slot = now
            if len(self.slots) == self.slots.maxlen:  # a full window: wait until its oldest call leaves it
                slot = max(slot, self.slots[0] + self.per_seconds)
            if self.slots:
                slot = max(slot, self.slots[-1])
            self.slots.append(slot)
        if slot > now:
            self.sleep(slot - now)


class HttpClient:
    def __init__(
        self,
        exchange: str,
        limit: RateLimit,
        timeout_s: float = 15.0,
        attempts: int = 5,
        backoff: Backoff | None = None,
        max_wait_s: float = 120.0,
        stop: StopSignal | None = None,
        health: ExchangeHealth | None = None,
    ):
        self.exchange = exchange
        self.stop = stop or StopSignal()
        self.health = health or ExchangeHealth()
        self.limit = limit
        self.bucket = CallWindow(limit, sleep=self.stop.sleep)
        self.used: int | None = None  # the exchange's count of what this IP used (RateLimit.used_header)
        self.paused_until_s = 0.0  # wall clock: no request of this client is sent before it
        self.paused_by: tuple[int, str] = (429, "")  # the status and problem that paused it
        self._pause_lock = threading.Lock()
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff = backoff or Backoff(1.0, 30.0)
        self.max_wait_s = max_wait_s
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "hodlboard-collector"

    def get_json(self, url: str, params: dict | None = None, headers: dict | None = None):
        """The JSON answer; HttpError (RateLimited for 429) when it fails for good, Stopped on a stop.
        `headers` (e.g. an API key) are sent, never logged."""
        self.backoff.reset()
        last_problem, status, retry_after = "", None, None
        for attempt in range(self.attempts):
            self.bucket.take()
            self._wait_while_paused(url)  # after the bucket's wait: a pause may have begun during it
            try:  # on its own thread, so a stop never waits for a slow or hanging answer
                response = self.stop.call(
                    self.session.get, url, params=params, headers=headers, timeout=self.timeout_s
                )
            except requests.RequestException as exc:
                last_problem, status = f"network error: {exc.__class__.__name__}", None
                wait = retry_after = None
            else:
                status = response.status_code
                self._note_usage(response.headers)
                if status == 200:
                    try:
                        return load_json(response.content)
                    except MessageError as exc:
                        raise HttpError(f"{self.exchange} {url}: answer is not JSON") from exc
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                if status == 429:
                    self.health.rate_limited += 1
                    last_problem = "rate limited (429)"
                    if (
                        retry_after
                    ):  # the limit is the IP's: every request of this client waits, not only this one
                        self._pause(retry_after, status, last_problem)
                elif status == BANNED:
                    self.health.rate_limited += 1
                    last_problem = "banned (418)"
                    self._banned(url, retry_after)
                elif status >= 500:
                    last_problem = f"HTTP {status}"
                else:
                    snippet = " ".join(response.text.split())[:200]
                    raise HttpError(f"{self.exchange} {url}: HTTP {status} {snippet}", status)
                wait = retry_after
            if attempt < self.attempts - 1:
                self._refuse_a_long_pause(url)
                wait = retry_wait(self.backoff, wait)
                log.debug("%s %s: %s, retrying in %.1f s", self.exchange, url, last_problem, wait)
                self.stop.sleep(min(wait, self.max_wait_s))
        failure = RateLimited if status in (429, BANNED) else HttpError
        message = f"{self.exchange} {url}: {last_problem} after {self.attempts} attempts"
        raise failure(message.replace("rate limited (429)", "still rate limited"), status, retry_after)

    def _pause(self, seconds: float, status: int, problem: str) -> None:
        with self._pause_lock:
            until_s = time.time() + min(seconds, LONGEST_PAUSE_S)
            if until_s > self.paused_until_s:
                self.paused_until_s, self.paused_by = until_s, (status, problem)

    def _wait_while_paused(self, url: str) -> None:
        while (remaining := self.paused_until_s - time.time()) > 0:
            self._refuse_a_long_pause(url)
            self.stop.sleep(remaining)

    def _refuse_a_long_pause(self, url: str) -> None:
        """A ban (2 minutes to 3 days), or a pause longer than max_wait_s, fails the call at once, sending
        nothing: callers run on the event loop's few worker threads, shared with every exchange, the writer and
        the valuation, and must not park one for the length of a ban. The caller retries after `retry_after_s`."""
        remaining = self.paused_until_s - time.time()
        status, problem = self.paused_by
        if remaining > 0 and (status == BANNED or remaining > self.max_wait_s):
            raise RateLimited(
                f"{self.exchange} {url}: {problem} for another {remaining:.0f} s: not sent", status, remaining
            )

    def _banned(self, url: str, retry_after_s: float | None) -> None:
        """Sending during a ban lengthens it: nothing is sent until it ends, however long (a stop still ends
        the wait)."""
        ban_s = min(
            retry_after_s if retry_after_s is not None else BAN_WITHOUT_RETRY_AFTER_S, LONGEST_PAUSE_S
        )
        self._pause(ban_s, BANNED, "banned (418)")
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.paused_until_s))
        log.error(
            "%s %s: the exchange BANNED this IP (HTTP 418) for %.0f s: no request to it before %s",
            self.exchange,
            url,
            ban_s,
            until,
        )

    def _note_usage(self, headers) -> None:
        """The exchange's own count of this IP's usage (other programs on the IP add to it): near its limit,
        every request waits for the next minute, when the count starts again."""
        if not (self.limit.used_header and self.limit.used_limit):
            return
        try:
            self.used = int(headers.get(self.limit.used_header, ""))
        except ValueError:
            return
        if self.used >= self.limit.used_limit * USED_SHARE_PAUSE:
            wait_s = 60 - time.time() % 60 + 1  # to just after the minute's end
            self._pause(wait_s, 429, "near the exchange's request weight limit")
            log.warning(
                "%s: %d of the %d request weight a minute used: requests wait %.0f s",
                self.exchange,
                self.used,
                self.limit.used_limit,
                wait_s,
            )

    def close(self) -> None:
        self.session.close()
