"""Older candle history from another source: where an exchange's candles stop short of `backfill.since`.

Some exchanges serve only their most recent candles (Kraken: the latest 720 rows; CoinGecko's free and Demo plans:
the last 365 days). For the span between `backfill.since` and where such an exchange's candles start, the plan
names another configured source that has the same pair (another exchange) or its base asset (CoinGecko
`coingecko.coins`, in any quote CoinGecko prices), choosing the one that reaches back furthest. Its candles stay
under its own `exchange` tag: history says where it came from. When that source does not backfill the pair
already (CoinGecko asked for ETH-EUR when its configured coins are priced in USD), the plan says it must fetch it.

Pure functions: the service logs the plan every backfill round and hands CoinGecko the pairs it must add.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from collector.config import Pair


@dataclass(frozen=True)
class Source:
    name: str  # the exchange tag
    pairs: tuple[Pair, ...]  # what it backfills anyway
    reach_start_s: int | None  # its oldest reachable candle; None: as far back as it has data
    coins: frozenset[str] = field(default_factory=frozenset)  # base assets it serves in any quote (CoinGecko)

    def serves(self, pair: Pair) -> bool:
        return pair in self.pairs or pair.base in self.coins

    def reaches_before(self, moment_s: int) -> bool:
        return self.reach_start_s is None or self.reach_start_s < moment_s


@dataclass(frozen=True)
class OlderHistory:
    """`exchange`'s `pair` has no candle before `end_s` (its reach); [start_s, end_s) comes from `source`."""

    exchange: str
    pair: Pair
    start_s: int  # backfill.since
    end_s: int  # where the exchange's own candles start
    source: str | None = None  # None: no configured source has older candles of this pair
    covered_from_s: int | None = None  # where the source's candles start (after start_s when it is short too)
    fetch: bool = False  # the source must backfill this pair in addition to its own

    def describe(self) -> str:
        head = (
            f"{self.exchange} {self.pair}: its candles reach back to {_day(self.end_s)} only, "
            f"after backfill.since ({_day(self.start_s)})"
        )
        if self.source is None:
            return f"{head}; no other configured source has older {self.pair} candles"
        older = f"{head}; older history from {self.source}'s {self.pair} candles"
        if self.covered_from_s is not None and self.covered_from_s > self.start_s:
            older += f" (which start at {_day(self.covered_from_s)}: nothing before)"
        return older + (" (fetched for this)" if self.fetch else "")


def reach_start_s(rows: int | None, reach_s: float | None, interval_s: int, now_s: float) -> int | None:
    """The oldest candle an exchange serves: the `rows` most recent candles (the one still open counted, as Kraken
    counts its 720), or `reach_s` back from now; None: all it has."""
    starts = []
    if rows is not None:
        current_open = int(now_s) - int(now_s) % interval_s
        starts.append(current_open - (rows - 1) * interval_s)
    if reach_s is not None:
        starts.append(int(now_s - reach_s))
    return max(starts) if starts else None


def plan_older_history(sources: list[Source], since_s: int) -> list[OlderHistory]:
    """Per pair whose exchange cannot reach `since_s`: the source of its older candles (or none).

    The source is another one that serves the pair and reaches further back; of several, the one reaching
    furthest, the first listed on a tie (exchanges come before CoinGecko)."""
    plan = []
    for short in sources:
        if not short.pairs or not short.reach_start_s or short.reach_start_s <= since_s:
            continue
        for pair in short.pairs:
            candidates = [
                other
                for other in sources
                if other is not short and other.serves(pair) and other.reaches_before(short.reach_start_s)
            ]
            entry = OlderHistory(short.name, pair, since_s, short.reach_start_s)
            if candidates:
                best = min(candidates, key=lambda other: other.reach_start_s or since_s)
                covered = max(since_s, best.reach_start_s or since_s)
                entry = OlderHistory(
                    short.name,
                    pair,
                    since_s,
                    short.reach_start_s,
                    best.name,
                    covered,
                    fetch=pair not in best.pairs,
                )
            plan.append(entry)
    return plan


def extra_pairs(plan: list[OlderHistory], source: str) -> list[Pair]:
    """Pairs `source` must backfill for others' older history, each once, in plan order."""
    return list(dict.fromkeys(entry.pair for entry in plan if entry.source == source and entry.fetch))


def _day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")
