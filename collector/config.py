"""portfolio.yml: what to track and where it is stored.

Every validation error names the file, the line, the key and what was expected, so a user
editing YAML on a home server can fix it without reading code.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from collector.errors import ConfigError

CONFIG_ENV_VAR = "HODLBOARD_CONFIG"
DEFAULT_CONFIG_PATH = Path("portfolio.yml")


@dataclass(frozen=True)
class Buckets:
    live: str = "crypto_live"
    history: str = "crypto_history"
    meta: str = "crypto_meta"


@dataclass(frozen=True)
class Config:
    buckets: Buckets = field(default_factory=Buckets)


def config_path(cli_path: str | None, environ=os.environ) -> tuple[Path, bool]:
    """The config file to read and whether the user named it (a named file must exist)."""
    if cli_path:
        return Path(cli_path), True
    if environ.get(CONFIG_ENV_VAR):
        return Path(environ[CONFIG_ENV_VAR]), True
    return DEFAULT_CONFIG_PATH, False


def load_config(path: Path, required: bool = True) -> Config:
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: configuration file not found (copy portfolio.example.yml)")
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> Config:
    doc = _Document.parse(text, source)
    root = doc.mapping((), allowed={"influxdb"})
    influx = doc.mapping(("influxdb",), allowed={"buckets"}) if "influxdb" in root else {}
    buckets = Buckets()
    if "buckets" in influx:
        names = doc.mapping(("influxdb", "buckets"), allowed={"live", "history", "meta"})
        buckets = Buckets(**{key: doc.bucket_name(("influxdb", "buckets", key)) for key in names})
    return Config(buckets=buckets)


class _Document:
    """A parsed YAML document that remembers the line of every key, for error messages."""

    def __init__(self, data, lines: dict[tuple, int], source: str):
        self.data = data
        self.lines = lines
        self.source = source

    @classmethod
    def parse(cls, text: str, source: str) -> "_Document":
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: not valid YAML: {problem}") from exc
        lines: dict[tuple, int] = {}
        data = _to_python(node, (), lines) if node is not None else {}
        return cls(data, lines, source)

    def get(self, path: tuple):
        value = self.data
        for key in path:
            value = value[key]
        return value

    def fail(self, path: tuple, expected: str):
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), 1)
        key = ".".join(str(part) for part in path) or "(top level)"
        raise ConfigError(f"{self.source}:{line}: {key}: expected {expected}, got {self.get(path)!r}")

    def mapping(self, path: tuple, allowed: set[str]) -> dict:
        value = self.get(path)
        if value is None and path:
            value = {}
        if not isinstance(value, dict):
            self.fail(path, "a mapping of keys")
        for key in value:
            if key not in allowed:
                line = self.lines.get(path + (key,), 1)
                where = ".".join(map(str, path + (key,)))
                raise ConfigError(
                    f"{self.source}:{line}: {where}: unknown key; expected one of {', '.join(sorted(allowed))}"
                )
        return value

    def bucket_name(self, path: tuple) -> str:
        value = self.get(path)
        if not isinstance(value, str) or not value.strip() or value.startswith("_"):
            self.fail(path, "a bucket name (text, not starting with '_')")
        return value


def _to_python(node, path: tuple, lines: dict[tuple, int]):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            result[key] = _to_python(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1  # the key's line, not its value's
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, path + (index,), lines) for index, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node):
    return yaml.SafeLoader("").construct_object(node, deep=True)
