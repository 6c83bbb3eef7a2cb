"""Gap fills still open, kept in a small file beside the spool (the collector's own volume).

Live trades after a gap are stored while its gap fill still runs (or retries), so after a stop or a crash the
last trade stored in InfluxDB is already past the gap. A restart resumes each pair from its open gap instead.
"""

import json
import logging
import os
from pathlib import Path

from collector.config import Pair
from collector.records import LastTrade

log = logging.getLogger(__name__)


class OpenGaps:
    def __init__(self, path: Path):
        self.path = path
        self._gaps: dict[str, dict[str, list]] = self._load()

    def of(self, exchange: str) -> dict[Pair, LastTrade]:
        """The open gaps of `exchange`: where each starts (its time, and the last trade id before it)."""
        gaps = {}
        for name, start in self._gaps.get(exchange, {}).items():
            try:
                time_s, trade_id = start
                gaps[Pair.parse(name)] = LastTrade(int(time_s), None if trade_id is None else int(trade_id))
            except (ValueError, TypeError) as exc:
                log.warning("%s: %s %s: unusable open gap %r (%s)", self.path, exchange, name, start, exc)
        return gaps

    def opened(self, exchange: str, pair: Pair, start: LastTrade) -> None:
        self._gaps.setdefault(exchange, {})[str(pair)] = [start.time_s, start.trade_id]
        self._save()

    def closed(self, exchange: str, pair: Pair) -> None:
        if self._gaps.get(exchange, {}).pop(str(pair), None) is not None:
            self._save()

    def _load(self) -> dict:
        try:
            gaps = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a broken file: say so, and go on without it
            log.warning("%s is unreadable (%s): gaps open at the last stop are not resumed", self.path, exc)
            return {}
        return (
            {name: pairs for name, pairs in gaps.items() if isinstance(pairs, dict)}
            if isinstance(gaps, dict)
            else {}
        )

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".new")  # the spool removes *.tmp
            temporary.write_text(json.dumps(self._gaps, sort_keys=True))
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning(
                "cannot write %s (%s): an open gap would not be resumed after a restart", self.path, exc
            )
