"""How to reach InfluxDB, from the environment (the variables influxdb-client's from_env_properties reads)."""

import contextlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from influxdb_client import InfluxDBClient

from collector.errors import ConfigError

URL_VAR = "INFLUXDB_V2_URL"
ORG_VAR = "INFLUXDB_V2_ORG"
TOKEN_VAR = "INFLUXDB_V2_TOKEN"
TOKEN_FILE_VAR = "INFLUXDB_V2_TOKEN_FILE"  # e.g. /run/hodlboard/collector.token, written by bootstrap


@dataclass(frozen=True)
class InfluxSettings:
    url: str
    org: str
    token: str
    token_file: Path | None = None  # where the token came from, read again when InfluxDB refuses it

    def __repr__(self) -> str:  # never let the token reach a log line
        return f"InfluxSettings(url={self.url!r}, org={self.org!r}, token=<hidden>, token_file={self.token_file})"

    def with_current_token(self) -> "InfluxSettings":
        """These settings with the token file's content now: a later `collector bootstrap` may replace it."""
        if self.token_file is None:
            return self
        token = _read_token_file(self.token_file)
        return replace(self, token=token) if token and token != self.token else self

    def client(self, timeout_s: float = 10.0, token: str | None = None):
        """A client without the library's own retries: callers retry by error class themselves."""
        return InfluxDBClient(
            url=self.url,
            token=token or self.token,
            org=self.org,
            timeout=int(timeout_s * 1000),
            retries=False,
        )

    @classmethod
    def from_env(cls, environ=os.environ) -> "InfluxSettings":
        values = {}
        token_file = None
        for var in (URL_VAR, ORG_VAR, TOKEN_VAR):
            value = environ.get(var, "").strip()
            if not value and var == TOKEN_VAR and environ.get(TOKEN_FILE_VAR):
                token_file = Path(environ[TOKEN_FILE_VAR])
                value = _read_token_file(token_file)
            if not value:
                raise ConfigError(f"{var} is not set (see .env.example)")
            values[var] = value
        url = values[URL_VAR].rstrip("/")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"{URL_VAR}={url!r} is not an http(s) URL such as http://influxdb:8086")
        return cls(url=url, org=values[ORG_VAR], token=values[TOKEN_VAR], token_file=token_file)


def _read_token_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{TOKEN_FILE_VAR}={path}: cannot read the token: {exc.strerror}") from exc


def api_error_message(exc, limit: int = 300) -> str:
    """One line from an InfluxDB error answer: its JSON "message", else the raw body."""
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else (exc.body or "")
    with contextlib.suppress(ValueError, AttributeError):  # not JSON: keep the raw text
        body = json.loads(body).get("message", body)
    return " ".join(str(body).split())[:limit] or exc.reason or "no details"
