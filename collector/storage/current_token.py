"""An InfluxDB client that follows its token file: a later `collector bootstrap` may replace the token.

Every reader and the writer talk to InfluxDB through one of these: when InfluxDB answers 401/403, the token file
is read again and, when it holds a new token, the client switches to it and the call is made once more.
"""

import logging
import threading

from influxdb_client.rest import ApiException

from collector.errors import ConfigError
from collector.influx_settings import InfluxSettings

log = logging.getLogger(__name__)

REFUSED_TOKEN = (401, 403)


class CurrentTokenClient:
    """The calls of influxdb-client's query and delete APIs that the collector makes, with the current token."""

    def __init__(self, settings: InfluxSettings, timeout_s: float):
        self.settings = settings
        self.timeout_s = timeout_s
        self.client = settings.client(timeout_s)
        self._lock = threading.Lock()

    def renew(self) -> bool:
        """Read the token file again; True when it holds a new token, now in use."""
        with self._lock:
            try:
                fresh = self.settings.with_current_token()
            except ConfigError as exc:
                log.error("cannot read the token again: %s", exc)
                return False
            if fresh is self.settings:
                return False
            log.warning("the collector token in %s was replaced; using the new one", fresh.token_file)
            stale, self.settings, self.client = self.client, fresh, fresh.client(self.timeout_s)
        stale.close()
        return True

    def call(self, action):
        """action(client), once more with a new token when InfluxDB refused the one in use."""
        client = self.client
        try:
            return action(client)
        except ApiException as exc:
            # another thread may have switched to the new token already: then just try again
            if exc.status not in REFUSED_TOKEN or (self.client is client and not self.renew()):
                raise
        return action(self.client)

    def query(self, query: str, **options):
        return self.call(lambda client: client.query_api().query(query, **options))

    def query_csv(self, query: str, **options):
        return self.call(lambda client: client.query_api().query_csv(query, **options))

    def delete(self, *args, **options):
        return self.call(lambda client: client.delete_api().delete(*args, **options))

    def close(self) -> None:
        self.client.close()
