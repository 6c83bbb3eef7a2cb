"""Idempotent set-up of the three buckets and the two scoped tokens.

Run with an admin token. A second run changes nothing: it reuses the tokens it wrote (InfluxDB 2.8+ stores
tokens hashed, so a token is proved by using it, not by reading it back), corrects a bucket whose retention
differs, and says what was already present.
"""

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3
from influxdb_client import (
    Authorization,
    BucketRetentionRules,
    Permission,
    PermissionResource,
)
from influxdb_client.rest import ApiException

from collector.config import Buckets
from collector.errors import ConfigError, RuntimeFailure
from collector.influx_settings import TOKEN_VAR, InfluxSettings, api_error_message

DAY = 86_400
# Bucket kind -> retention in seconds (0 = forever), as docs/data-contract.md fixes them.
RETENTION_SECONDS = {"live": 90 * DAY, "history": 3650 * DAY, "meta": 0}
# Shard groups: InfluxDB's default for a long retention is 7 days, i.e. ~520 shards for ten years of small hourly
# series. Larger groups made the first backfill of 6 years x 3 pairs 4x faster (9.1 s -> 2.3 s, so no batch outlasts
# the writer's timeout) at the same query speed. None keeps InfluxDB's default (1 day for 90 days, 7 days for ever).
SHARD_GROUP_SECONDS = {"live": None, "history": 30 * DAY, "meta": None}
BUCKET_PURPOSE = {
    "live": "hodlboard live trades and samples",
    "history": "hodlboard candles and hourly valuation",
    "meta": "hodlboard tickers, assets and transactions",
}
DEFAULT_SECRETS_DIR = Path("/run/hodlboard")
# The longest retention InfluxDB Cloud's free plan allows: a bucket it refuses longer is kept this long instead.
PLAN_LIMIT_SECONDS = 30 * DAY
REQUEST_TIMEOUT_S = 10


@dataclass(frozen=True)
class TokenRole:
    name: str
    actions: tuple[str, ...]

    @property
    def description(self) -> str:
        return f"hodlboard {self.name}"

    def token_file(self, secrets_dir: Path) -> Path:
        return secrets_dir / f"{self.name}.token"


# The collector writes all three buckets and reads them back for incremental backfill; Grafana only reads.
TOKEN_ROLES = (TokenRole("collector", ("read", "write")), TokenRole("grafana", ("read",)))


def format_retention(seconds: int) -> str:
    if seconds == 0:
        return "forever"
    return f"{seconds // DAY} days" if seconds % DAY == 0 else f"{seconds} s"


def retention_rule(kind: str, seconds: int | None = None) -> BucketRetentionRules:
    """The bucket's own retention, or `seconds` (with InfluxDB's default shard groups) where a plan limits it."""
    return BucketRetentionRules(
        type="expire",
        every_seconds=RETENTION_SECONDS[kind] if seconds is None else seconds,
        shard_group_duration_seconds=SHARD_GROUP_SECONDS[kind] if seconds is None else None,
    )


# How a plan refuses what it does not allow. Its words are not documented (Cloud answered 403 for a retention over
# its limit): a retention refusal is proven by the plan's limit then being accepted, not by the text.
PLAN_REFUSALS = (400, 403, 422)
# InfluxDB Cloud's free plan holds 2 buckets; past that it answers "creating bucket would exceed quota"
BUCKET_QUOTA_WORD = "quota"


def _bucket_quota(exc: ApiException, name: str, url: str) -> ConfigError | None:
    """The plan allows fewer buckets than hodlboard needs, said as such (not as a token problem)."""
    if exc.status not in PLAN_REFUSALS or BUCKET_QUOTA_WORD not in api_error_message(exc).lower():
        return None
    return ConfigError(
        f"InfluxDB at {url} refused to create bucket {name} ({api_error_message(exc)}): hodlboard needs "
        f"{len(RETENTION_SECONDS)} buckets and InfluxDB Cloud's free plan holds 2. Use a paid plan, or the bundled "
        "InfluxDB (docker-compose.yml)"
    )


def retention_of(bucket) -> int:
    expiring = [rule.every_seconds or 0 for rule in (bucket.retention_rules or []) if rule.type == "expire"]
    return min(expiring) if expiring else 0


@contextlib.contextmanager
def influx_errors(settings: InfluxSettings):
    """Turn client exceptions into one clear line with the right exit code."""
    try:
        yield
    except ApiException as exc:
        if exc.status == 401:
            raise ConfigError(f"InfluxDB at {settings.url} rejected the token in {TOKEN_VAR} (401)") from exc
        if exc.status == 403:
            raise ConfigError(
                f"the token in {TOKEN_VAR} may not do this on {settings.url} (403): bootstrap needs an admin token"
            ) from exc
        raise RuntimeFailure(
            f"InfluxDB at {settings.url} answered {exc.status}: {api_error_message(exc)}"
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise RuntimeFailure(f"cannot reach InfluxDB at {settings.url}: {_network_reason(exc)}") from exc


def _network_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    # urllib3 wraps the socket error in "<object at 0x..>: Failed to establish ...: [Errno 111] ..."
    return text.split(": ", 1)[1] if text.startswith("<") and ": " in text else text


class Bootstrap:
    def __init__(
        self,
        settings: InfluxSettings,
        buckets: Buckets,
        secrets_dir: Path = DEFAULT_SECRETS_DIR,
        owners: dict[str, tuple[int, int]] | None = None,
        report=print,
    ):
        self.settings = settings
        self.buckets = buckets
        self.secrets_dir = secrets_dir
        self.owners = owners or {}
        self.report = report
        self.client = settings.client(REQUEST_TIMEOUT_S)

    def run(self, wait_seconds: float = 0) -> None:
        self._prepare_secrets_dir()
        try:
            org_id = self._find_org(wait_seconds)
            with influx_errors(self.settings):
                bucket_ids = [self._ensure_bucket(org_id, kind) for kind in RETENTION_SECONDS]
                for role in TOKEN_ROLES:
                    self._ensure_token(org_id, role, bucket_ids)
        finally:
            self.client.close()

    def _find_org(self, wait_seconds: float) -> str:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                with influx_errors(self.settings):
                    orgs = _not_found_as_empty(
                        lambda: self.client.organizations_api().find_organizations(org=self.settings.org)
                    )
            except RuntimeFailure:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1)
                continue
            if not orgs and not _not_found_as_empty(
                lambda: self.client.organizations_api().find_organizations()
            ):
                raise ConfigError(
                    f"the token in {TOKEN_VAR} cannot see any organization on {self.settings.url}: "
                    "bootstrap needs an admin token"
                )
            if not orgs:
                raise ConfigError(
                    f"organization {self.settings.org!r} (INFLUXDB_V2_ORG) does not exist on {self.settings.url}"
                )
            return orgs[0].id

    def _ensure_bucket(self, org_id: str, kind: str) -> str:
        name = getattr(self.buckets, kind)
        wanted = RETENTION_SECONDS[kind]
        api = self.client.buckets_api()
        found = _not_found_as_empty(lambda: api.find_buckets(org_id=org_id, name=name).buckets)
        if not found:

            def create(rule):
                try:
                    return api.create_bucket(
                        bucket_name=name, org=org_id, retention_rules=rule, description=BUCKET_PURPOSE[kind]
                    )
                except ApiException as exc:
                    quota = _bucket_quota(exc, name, self.settings.url)
                    if quota is not None:
                        raise quota from exc
                    raise

            bucket, kept = self._within_plan(name, kind, create)
            self.report(f"bucket {name}: created, retention {format_retention(kept)}")
            return bucket.id
        bucket = found[0]
        actual = retention_of(bucket)
        if actual == wanted:
            self.report(f"bucket {name}: already present, retention {format_retention(wanted)}")
            return bucket.id

        def update(rule):
            bucket.retention_rules = [rule]
            return api.update_bucket(bucket)

        _, kept = self._within_plan(name, kind, update)
        if kept != actual:
            self.report(
                f"bucket {name}: retention corrected from {format_retention(actual)} to {format_retention(kept)}"
            )
        return bucket.id

    def _within_plan(self, name: str, kind: str, apply):
        """`apply` the bucket's retention; if InfluxDB refuses it and accepts the plan's limit instead (InfluxDB
        Cloud's free plan keeps 30 days at most), that limit, said loudly: older data is deleted by InfluxDB. A
        refusal the limit does not cure (the token, the request) is raised as it came. Returns what `apply`
        returned and the retention kept."""
        wanted = RETENTION_SECONDS[kind]
        try:
            return apply(retention_rule(kind)), wanted
        except ApiException as exc:
            if exc.status not in PLAN_REFUSALS or 0 < wanted <= PLAN_LIMIT_SECONDS:
                raise
            refused, refusal = exc, api_error_message(exc)
        try:
            result = apply(retention_rule(kind, PLAN_LIMIT_SECONDS))
        except ApiException:
            raise refused from None
        self.report(
            f"bucket {name}: WARNING: InfluxDB refused a retention of {format_retention(wanted)} ({refusal}); it keeps "
            f"{format_retention(PLAN_LIMIT_SECONDS)}, the limit of InfluxDB Cloud's free plan: data older than that "
            f"is deleted and older candles are refused. A paid plan or the bundled InfluxDB keeps "
            f"{format_retention(wanted)}; run bootstrap again after upgrading."
        )
        return result, PLAN_LIMIT_SECONDS

    def _ensure_token(self, org_id: str, role: TokenRole, bucket_ids: list[str]) -> None:
        wanted = {(action, "buckets", bucket_id) for bucket_id in bucket_ids for action in role.actions}
        auths_api = self.client.authorizations_api()
        ours = [a for a in auths_api.find_authorizations(org_id=org_id) if a.description == role.description]
        token_file = role.token_file(self.secrets_dir)
        token = _read_token(token_file)
        current = [a for a in ours if a.status == "active" and _permission_set(a) == wanted]

        if token and current and self._token_reads(token, bucket_ids):
            self._apply_owner(role, token_file)
            self.report(f"token {role.name}: already present, reusing {token_file}")
            return
        if not token:
            why = "created"
        elif not current:
            why = "replaced (its permissions were out of date)"
        else:
            why = f"replaced (the token in {token_file} was no longer accepted)"

        permissions = [
            Permission(action=action, resource=PermissionResource(type=kind, id=bucket_id, org_id=org_id))
            for action, kind, bucket_id in sorted(wanted)
        ]
        created = auths_api.create_authorization(
            authorization=Authorization(org_id=org_id, permissions=permissions, description=role.description)
        )
        self._write_token(role, token_file, created.token)
        for stale in ours:
            auths_api.delete_authorization(stale)
        self.report(f"token {role.name}: {why}, written to {token_file}")

    def _token_reads(self, token: str, bucket_ids: list[str]) -> bool:
        """A stored token is proved by reading every bucket with it: hashed tokens cannot be compared."""
        with self.settings.client(REQUEST_TIMEOUT_S, token=token) as client:
            api = client.buckets_api()
            for bucket_id in bucket_ids:
                try:
                    api.find_bucket_by_id(bucket_id)
                except ApiException as exc:
                    if exc.status in (401, 403, 404):
                        return False
                    raise
        return True

    def _prepare_secrets_dir(self) -> None:
        """Checked before anything is created, so a bad path changes nothing on the server."""
        try:
            self.secrets_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            probe = self.secrets_dir / ".writable"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise RuntimeFailure(f"cannot use secrets directory {self.secrets_dir}: {exc.strerror}") from exc

    def _write_token(self, role: TokenRole, token_file: Path, token: str) -> None:
        try:
            partial = token_file.with_name(f".{token_file.name}.tmp")
            partial.unlink(missing_ok=True)
            # No trailing newline: Grafana's $__file{} and readers take the content verbatim.
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(token)
            os.replace(partial, token_file)
        except OSError as exc:
            raise RuntimeFailure(f"cannot write {token_file}: {exc.strerror}") from exc
        self._apply_owner(role, token_file)

    def _apply_owner(self, role: TokenRole, token_file: Path) -> None:
        owner = self.owners.get(role.name)
        if owner is None:
            return
        try:
            os.chown(token_file, *owner)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot give {token_file} to {owner[0]}:{owner[1]}: {exc.strerror}"
            ) from exc


def _not_found_as_empty(lookup) -> list:
    """InfluxDB answers a lookup by name with 404 where a list API would return nothing."""
    try:
        return lookup() or []
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise


def _read_token(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise RuntimeFailure(f"cannot read {path}: {exc.strerror}") from exc


def _permission_set(auth) -> set[tuple[str, str, str]]:
    return {(p.action, p.resource.type, p.resource.id) for p in auth.permissions or []}


def parse_owner(text: str) -> tuple[str, tuple[int, int]]:
    """`ROLE=UID[:GID]` from the command line."""
    roles = {role.name for role in TOKEN_ROLES}
    role, sep, ids = text.partition("=")
    uid, _, gid = ids.partition(":")
    if not sep or role not in roles or not uid.isdigit() or (gid and not gid.isdigit()):
        raise ConfigError(
            f"--owner {text!r}: expected ROLE=UID[:GID] with ROLE one of {', '.join(sorted(roles))}"
        )
    return role, (int(uid), int(gid) if gid else int(uid))
