"""InfluxDB Cloud's free plan in front of the real influxd: a bucket retention over 30 days (or forever) is refused,
and so is a bucket beyond the plan's quota (`bucket_quota`, the free plan's is 2); every other request goes to the
real server unchanged. Cloud's exact words for the retention refusal are not documented: the status and text are
parameters, so bootstrap is tested not to depend on them."""

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PLAN_LIMIT_S = 30 * 86400
REFUSAL = "bucket retention of {seconds}s exceeds the plan's maximum retention period of 720h0m0s"
# what Cloud answered past the bucket quota (influxdata/community-templates#227, influxdata/docs-v2#3896)
QUOTA_REFUSAL = "creating bucket would exceed quota"


class PlanLimitedInflux:
    def __init__(
        self, upstream: str, status: int = 422, refusal: str = REFUSAL, bucket_quota: int | None = None
    ):
        self.upstream = upstream
        self.status, self.refusal, self.bucket_quota = status, refusal, bucket_quota
        self.created = 0  # buckets created through this proxy
        self.refused: list[int] = []  # the retentions refused, in seconds (0 = forever)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # the test's output stays the collector's
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                refused = proxy._refusal(self.command, self.path, body)
                if refused is not None:
                    return self._answer(proxy.status, {"code": "forbidden", "message": refused})
                if self.command == "POST" and self.path.startswith("/api/v2/buckets"):
                    proxy.created += 1
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body or None, headers=headers, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, answer, kind = (
                            response.status,
                            response.read(),
                            response.headers.get_content_type(),
                        )
                except urllib.error.HTTPError as error:
                    status, answer, kind = error.code, error.read(), error.headers.get_content_type()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _answer(self, status: int, document: dict) -> None:
                answer = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _refusal(self, method: str, path: str, body: bytes) -> str | None:
        if not path.startswith("/api/v2/buckets") or method not in ("POST", "PATCH") or not body:
            return None
        if method == "POST" and self.bucket_quota is not None and self.created >= self.bucket_quota:
            return QUOTA_REFUSAL
        rules = json.loads(body).get("retentionRules") or []
        seconds = min((rule.get("everySeconds") or 0 for rule in rules), default=0)
        if 0 < seconds <= PLAN_LIMIT_S:
            return None
        self.refused.append(seconds)
        return self.refusal.format(seconds=seconds)

    def __enter__(self) -> "PlanLimitedInflux":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
