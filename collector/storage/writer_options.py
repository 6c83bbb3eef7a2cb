"""The writer's options, and the figures it keeps: the `collector` measurement's writer fields."""

from dataclasses import dataclass


@dataclass(frozen=True)
class WriterOptions:
    batch_size: int = 5000
    flush_interval_s: float = 1.0
    timeout_s: float = 4.0  # per HTTP request
    retry_attempts: int = 3  # quick retries before a batch is spooled
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    queue_limit: int = 50_000  # points held in memory; beyond it, new points go straight to the spool
    restarts: int = 5  # failures of the writer thread in a row before it gives up


@dataclass
class WriterStats:
    written_points: int = 0
    dropped_points: int = 0
    write_errors: int = 0
    retries: int = 0
    restarts: int = 0
    write_latency_ms: float = 0.0
    spool_points: int = 0

    def health(self) -> dict[str, int | float]:
        """The writer's fields of the `collector` measurement."""
        return {
            "dropped_points": self.dropped_points,
            "write_errors": self.write_errors,
            "write_latency_ms": float(self.write_latency_ms),
            "spool_points": self.spool_points,
            "writer_restarts": self.restarts,
        }
