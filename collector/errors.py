"""The two kinds of failure a command reports, each with its exit code."""


class ConfigError(Exception):
    """Bad usage or configuration: the user has to change something (exit code 2)."""

    exit_code = 2


class RuntimeFailure(Exception):
    """Something outside the configuration failed, e.g. InfluxDB is unreachable (exit code 1)."""

    exit_code = 1
