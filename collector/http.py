"""HTTP for exchange REST APIs: a rate limit per exchange, retries by error class, exact decimals."""

import logging
import threading
import time

import requests

from collector.exchanges.base import MessageError, RateLimit, load_json
from collector.retry import Backoff, retry_after_seconds

log = logging.getLogger(__name__)


class RateLimited(Exception):
    """The exchange kept answering 429 after every retry: not the same thing as 'no data'."""


class HttpError(Exception):
    """A request that failed for good (4xx, or 5xx/network after every retry)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TokenBucket:
    """At most `requests` per `per_seconds`, smoothed; thread-safe."""

    def __init__(self, limit: RateLimit, clock=time.monotonic, sleep=time.sleep):
        self.capacity = float(limit.requests)
        self.rate = limit.requests / limit.per_seconds
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.updated = clock()
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            self.tokens -= 1
        if wait:
            self.sleep(wait)


class HttpClient:
    def __init__(
        self,
        exchange: str,
        limit: RateLimit,
        timeout_s: float = 15.0,
        attempts: int = 5,
        backoff: Backoff | None = None,
        max_wait_s: float = 120.0,
    ):
        self.exchange = exchange
        self.bucket = TokenBucket(limit)
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff = backoff or Backoff(1.0, 30.0)
        self.max_wait_s = max_wait_s
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "hodlboard-collector"
        self.stats = {"requests": 0, "rate_limited": 0, "http_errors": 0}

    def get_json(self, url: str, params: dict | None = None):
        self.backoff.reset()
        last_problem = ""
        for attempt in range(self.attempts):
            self.bucket.take()
            self.stats["requests"] += 1
            try:
                response = self.session.get(url, params=params, timeout=self.timeout_s)
            except requests.RequestException as exc:
                last_problem = f"network error: {exc.__class__.__name__}"
                wait = self.backoff.next()
            else:
                if response.status_code == 200:
                    try:
                        return load_json(response.content)
                    except MessageError as exc:
                        self.stats["http_errors"] += 1
                        raise HttpError(f"{self.exchange} {url}: answer is not JSON") from exc
                if response.status_code == 429:
                    self.stats["rate_limited"] += 1
                    last_problem = "rate limited (429)"
                    wait = retry_after_seconds(response.headers.get("Retry-After")) or self.backoff.next()
                elif response.status_code >= 500:
                    last_problem = f"HTTP {response.status_code}"
                    wait = self.backoff.next()
                else:
                    self.stats["http_errors"] += 1
                    snippet = " ".join(response.text.split())[:200]
                    raise HttpError(
                        f"{self.exchange} {url}: HTTP {response.status_code} {snippet}", response.status_code
                    )
            if attempt < self.attempts - 1:
                log.debug("%s %s: %s, retrying in %.1f s", self.exchange, url, last_problem, wait)
                time.sleep(min(wait, self.max_wait_s))
        self.stats["http_errors"] += 1
        if last_problem.startswith("rate limited"):
            raise RateLimited(f"{self.exchange} {url}: still rate limited after {self.attempts} attempts")
        raise HttpError(f"{self.exchange} {url}: {last_problem} after {self.attempts} attempts")

    def close(self) -> None:
        self.session.close()
