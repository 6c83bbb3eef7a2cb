"""collector bootstrap against the real influxd: retentions, idempotency, token scopes, error paths."""

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from influxdb_client import BucketRetentionRules, InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from collector.bootstrap import Bootstrap
from collector.config import Buckets
from tests.influxd import ROOT

DEFAULT_BUCKETS = Buckets()
EXPECTED_RETENTION = {"crypto_live": 7_776_000, "crypto_history": 315_360_000, "crypto_meta": 0}


def run_bootstrap(influx, secrets_dir, buckets=DEFAULT_BUCKETS, owners=None) -> list[str]:
    lines: list[str] = []
    Bootstrap(influx, buckets, secrets_dir, owners, report=lines.append).run()
    return lines


def org_id(client, influx) -> str:
    return client.organizations_api().find_organizations(org=influx.org)[0].id


def buckets_by_name(client, influx) -> dict:
    found = client.buckets_api().find_buckets(org_id=org_id(client, influx), limit=100).buckets
    return {bucket.name: bucket for bucket in found}


def retention(bucket) -> int:
    return sum(rule.every_seconds or 0 for rule in bucket.retention_rules)


def our_authorizations(client, influx, role: str) -> list:
    auths = client.authorizations_api().find_authorizations(org_id=org_id(client, influx))
    return [auth for auth in auths if auth.description == f"hodlboard {role}"]


def cli(env, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_creates_buckets_with_exact_retentions(influx, admin_client, tmp_path):
    lines = run_bootstrap(influx, tmp_path)

    found = buckets_by_name(admin_client, influx)
    assert {name: retention(found[name]) for name in EXPECTED_RETENTION} == EXPECTED_RETENTION
    shard_groups = {name: found[name].retention_rules[0].shard_group_duration_seconds for name in found}
    assert shard_groups["crypto_history"] == 30 * 86400 and shard_groups["crypto_meta"] == 7 * 86400
    assert shard_groups["crypto_live"] == 86400  # InfluxDB's own default for a 90-day retention
    assert "bucket crypto_live: created, retention 90 days" in lines
    assert "bucket crypto_history: created, retention 3650 days" in lines
    assert "bucket crypto_meta: created, retention forever" in lines


def test_writes_token_files_private_and_never_reports_them(influx, tmp_path):
    secrets_dir = tmp_path / "secrets"
    lines = run_bootstrap(influx, secrets_dir)

    for role in ("collector", "grafana"):
        token_file = secrets_dir / f"{role}.token"
        token = token_file.read_text()
        assert len(token) > 20 and token == token.strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert not any(token in line for line in lines)
        assert f"token {role}: created, written to {token_file}" in lines
    assert sorted(p.name for p in secrets_dir.iterdir()) == ["collector.token", "grafana.token"]


def test_second_run_changes_nothing_and_says_so(influx, admin_client, tmp_path):
    run_bootstrap(influx, tmp_path)
    tokens_before = {role: (tmp_path / f"{role}.token").read_text() for role in ("collector", "grafana")}
    ids_before = {name: bucket.id for name, bucket in buckets_by_name(admin_client, influx).items()}
    auths_before = {
        role: [a.id for a in our_authorizations(admin_client, influx, role)] for role in tokens_before
    }

    lines = run_bootstrap(influx, tmp_path)

    assert lines == [
        "bucket crypto_live: already present, retention 90 days",
        "bucket crypto_history: already present, retention 3650 days",
        "bucket crypto_meta: already present, retention forever",
        f"token collector: already present, reusing {tmp_path / 'collector.token'}",
        f"token grafana: already present, reusing {tmp_path / 'grafana.token'}",
    ]
    assert {role: (tmp_path / f"{role}.token").read_text() for role in tokens_before} == tokens_before
    assert {name: bucket.id for name, bucket in buckets_by_name(admin_client, influx).items()} == ids_before
    assert {
        role: [a.id for a in our_authorizations(admin_client, influx, role)] for role in tokens_before
    } == auths_before
    assert all(len(ids) == 1 for ids in auths_before.values())


@pytest.mark.parametrize(
    ("name", "drifted", "expected_line"),
    [
        ("crypto_live", 30 * 86_400, "bucket crypto_live: retention corrected from 30 days to 90 days"),
        ("crypto_history", 0, "bucket crypto_history: retention corrected from forever to 3650 days"),
        ("crypto_meta", 7 * 86_400, "bucket crypto_meta: retention corrected from 7 days to forever"),
    ],
)
def test_corrects_a_drifted_retention(influx, admin_client, tmp_path, name, drifted, expected_line):
    run_bootstrap(influx, tmp_path)
    bucket = buckets_by_name(admin_client, influx)[name]
    bucket.retention_rules = [BucketRetentionRules(type="expire", every_seconds=drifted)]
    admin_client.buckets_api().update_bucket(bucket)
    assert retention(buckets_by_name(admin_client, influx)[name]) == drifted

    lines = run_bootstrap(influx, tmp_path)

    assert expected_line in lines
    assert retention(buckets_by_name(admin_client, influx)[name]) == EXPECTED_RETENTION[name]


def test_replaces_a_lost_token_file_and_revokes_the_old_token(influx, admin_client, tmp_path):
    run_bootstrap(influx, tmp_path)
    old_token = (tmp_path / "collector.token").read_text()
    old_ids = [a.id for a in our_authorizations(admin_client, influx, "collector")]
    (tmp_path / "collector.token").unlink()

    lines = run_bootstrap(influx, tmp_path)

    new_token = (tmp_path / "collector.token").read_text()
    assert new_token != old_token
    assert f"token collector: created, written to {tmp_path / 'collector.token'}" in lines
    remaining = [a.id for a in our_authorizations(admin_client, influx, "collector")]
    assert len(remaining) == 1 and remaining[0] not in old_ids
    with (
        InfluxDBClient(url=influx.url, token=old_token, org=influx.org) as old,
        pytest.raises(ApiException) as err,
    ):
        old.buckets_api().find_buckets()
    assert err.value.status == 401


def test_replaces_a_token_revoked_on_the_server(influx, admin_client, tmp_path):
    run_bootstrap(influx, tmp_path)
    for auth in our_authorizations(admin_client, influx, "grafana"):
        admin_client.authorizations_api().delete_authorization(auth)

    lines = run_bootstrap(influx, tmp_path)

    assert any(line.startswith("token grafana: replaced") for line in lines)
    assert f"token collector: already present, reusing {tmp_path / 'collector.token'}" in lines
    assert len(our_authorizations(admin_client, influx, "grafana")) == 1
    assert_can_read(influx, (tmp_path / "grafana.token").read_text(), "crypto_meta")


def test_recreated_bucket_gets_tokens_with_its_new_id(influx, admin_client, tmp_path):
    run_bootstrap(influx, tmp_path)
    admin_client.buckets_api().delete_bucket(buckets_by_name(admin_client, influx)["crypto_history"])

    lines = run_bootstrap(influx, tmp_path)

    assert "bucket crypto_history: created, retention 3650 days" in lines
    assert (
        "token collector: replaced (its permissions were out of date), written to "
        + str(tmp_path / "collector.token")
        in lines
    )
    assert_can_write(influx, (tmp_path / "collector.token").read_text(), "crypto_history")


def test_custom_bucket_names(influx, admin_client, tmp_path):
    names = Buckets(live="l", history="h", meta="m")
    run_bootstrap(influx, tmp_path, buckets=names)
    found = buckets_by_name(admin_client, influx)
    assert {name: retention(found[name]) for name in "lhm"} == {"l": 7_776_000, "h": 315_360_000, "m": 0}
    assert "crypto_live" not in found


def test_owner_option_hands_the_file_over(influx, tmp_path):
    uid, gid = (4242, 4343) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    run_bootstrap(influx, tmp_path, owners={"grafana": (uid, gid)})
    info = (tmp_path / "grafana.token").stat()
    assert (info.st_uid, info.st_gid) == (uid, gid)
    assert (tmp_path / "collector.token").stat().st_uid == os.geteuid()


# --- token scopes, enforced by the real server ---------------------------------------------------------


def write_point(influx, token, bucket):
    with InfluxDBClient(url=influx.url, token=token, org=influx.org) as client:
        point = Point("scope_check").field("value", 1.0).time(datetime.now(UTC))
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=point)


def query_bucket(influx, token, bucket):
    with InfluxDBClient(url=influx.url, token=token, org=influx.org) as client:
        return client.query_api().query(f'from(bucket: "{bucket}") |> range(start: -1h)')


def assert_can_read(influx, token, bucket):
    query_bucket(influx, token, bucket)


def assert_can_write(influx, token, bucket):
    write_point(influx, token, bucket)
    tables = query_bucket(influx, token, bucket)
    assert [record.get_value() for table in tables for record in table.records] == [1.0]


@pytest.fixture
def tokens(influx, tmp_path):
    run_bootstrap(influx, tmp_path)
    return {role: (tmp_path / f"{role}.token").read_text() for role in ("collector", "grafana")}


@pytest.mark.parametrize("bucket", ["crypto_live", "crypto_history", "crypto_meta"])
def test_collector_token_writes_and_reads_every_bucket(influx, tokens, bucket):
    assert_can_write(influx, tokens["collector"], bucket)


@pytest.mark.parametrize("bucket", ["crypto_live", "crypto_history", "crypto_meta"])
def test_grafana_token_reads_but_cannot_write(influx, tokens, bucket):
    write_point(influx, tokens["collector"], bucket)
    tables = query_bucket(influx, tokens["grafana"], bucket)
    assert sum(len(table.records) for table in tables) == 1
    with pytest.raises(ApiException) as err:
        write_point(influx, tokens["grafana"], bucket)
    assert err.value.status in (401, 403, 404)


def test_collector_token_cannot_delete_or_create_buckets_outside_its_scope(influx, admin_client, tokens):
    # InfluxDB 2 authorizes deleting a bucket with the same write permission that writes data to it, so
    # the collector's own three buckets cannot be protected from it; every other bucket is.
    other = admin_client.buckets_api().create_bucket(bucket_name="other", org=org_id(admin_client, influx))
    with InfluxDBClient(url=influx.url, token=tokens["collector"], org=influx.org) as client:
        with pytest.raises(ApiException) as deleting:
            client.buckets_api().delete_bucket(other.id)
        with pytest.raises(ApiException) as creating:
            client.buckets_api().create_bucket(bucket_name="new", org=org_id(admin_client, influx))
    assert deleting.value.status in (401, 403, 404)
    assert creating.value.status in (401, 403, 404)
    assert {"other", "crypto_live"} <= set(buckets_by_name(admin_client, influx))
    assert "new" not in buckets_by_name(admin_client, influx)


def test_grafana_token_cannot_delete_its_buckets(influx, admin_client, tokens):
    live = buckets_by_name(admin_client, influx)["crypto_live"]
    with (
        InfluxDBClient(url=influx.url, token=tokens["grafana"], org=influx.org) as client,
        pytest.raises(ApiException) as err,
    ):
        client.buckets_api().delete_bucket(live.id)
    assert err.value.status in (401, 403, 404)
    assert "crypto_live" in buckets_by_name(admin_client, influx)


@pytest.mark.parametrize("role", ["collector", "grafana"])
def test_tokens_cannot_read_other_buckets(influx, admin_client, tokens, role):
    other = admin_client.buckets_api().create_bucket(bucket_name="private", org=org_id(admin_client, influx))
    write_point(influx, influx.token, other.name)
    with pytest.raises(ApiException) as err:
        query_bucket(influx, tokens[role], other.name)
    assert err.value.status in (401, 403, 404)


# --- the command line and its error paths ------------------------------------------------------------------


def test_cli_bootstrap_reports_and_exits_zero(influx_env, influx, admin_client, tmp_path):
    result = cli(influx_env, "bootstrap", "--secrets-dir", str(tmp_path / "s"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "bucket crypto_live: created, retention 90 days",
        "bucket crypto_history: created, retention 3650 days",
        "bucket crypto_meta: created, retention forever",
    ]
    stored = buckets_by_name(admin_client, influx)
    assert {name: retention(stored[name]) for name in ("crypto_live", "crypto_history", "crypto_meta")} == {
        "crypto_live": 90 * 86400,
        "crypto_history": 3650 * 86400,
        "crypto_meta": 0,
    }
    token = (tmp_path / "s" / "collector.token").read_text()
    assert token not in result.stdout + result.stderr
    assert_can_write(influx, token, "crypto_live")  # the token the command wrote is one the server accepts


def test_cli_reads_bucket_names_from_config(influx_env, influx, admin_client, tmp_path):
    config = tmp_path / "portfolio.yml"
    config.write_text("influxdb:\n  buckets:\n    live: my_live\n")
    result = cli(influx_env, "bootstrap", "--config", str(config), "--secrets-dir", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert {"my_live", "crypto_history", "crypto_meta"} <= set(buckets_by_name(admin_client, influx))


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_cli_unreachable_url(influx_env, tmp_path):
    env = {**influx_env, "INFLUXDB_V2_URL": "http://127.0.0.1:9"}
    line = one_line_error(cli(env, "bootstrap", "--secrets-dir", str(tmp_path)), 1)
    assert line.startswith("collector bootstrap: cannot reach InfluxDB at http://127.0.0.1:9")


def test_cli_rejected_token(influx_env, tmp_path):
    env = {**influx_env, "INFLUXDB_V2_TOKEN": "not-a-token"}
    line = one_line_error(cli(env, "bootstrap", "--secrets-dir", str(tmp_path)), 2)
    assert "rejected the token in INFLUXDB_V2_TOKEN (401)" in line
    assert "not-a-token" not in line


def test_cli_missing_org(influx_env, tmp_path):
    env = {**influx_env, "INFLUXDB_V2_ORG": "no-such-org"}
    line = one_line_error(cli(env, "bootstrap", "--secrets-dir", str(tmp_path)), 2)
    assert "organization 'no-such-org' (INFLUXDB_V2_ORG) does not exist" in line


def test_cli_non_admin_token_is_refused(influx_env, tokens, tmp_path):
    env = {**influx_env, "INFLUXDB_V2_TOKEN": tokens["grafana"]}
    line = one_line_error(cli(env, "bootstrap", "--secrets-dir", str(tmp_path / "s")), 2)
    assert "the token in INFLUXDB_V2_TOKEN cannot see any organization" in line
    assert "admin token" in line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"INFLUXDB_V2_URL": ""}, "INFLUXDB_V2_URL is not set"),
        ({"INFLUXDB_V2_ORG": ""}, "INFLUXDB_V2_ORG is not set"),
        ({"INFLUXDB_V2_TOKEN": ""}, "INFLUXDB_V2_TOKEN is not set"),
        ({"INFLUXDB_V2_URL": "localhost:8086"}, "is not an http(s) URL"),
    ],
)
def test_cli_missing_or_bad_settings(influx_env, tmp_path, change, expected):
    line = one_line_error(cli({**influx_env, **change}, "bootstrap", "--secrets-dir", str(tmp_path)), 2)
    assert expected in line


def test_cli_bad_owner_option(influx_env, tmp_path):
    result = cli(influx_env, "bootstrap", "--secrets-dir", str(tmp_path), "--owner", "grafan=472")
    assert "--owner 'grafan=472': expected ROLE=UID[:GID]" in one_line_error(result, 2)


def test_cli_bad_config_names_file_line_and_key(influx_env, tmp_path):
    config = tmp_path / "portfolio.yml"
    config.write_text("influxdb:\n  buckets:\n    live: _internal\n")
    result = cli(influx_env, "bootstrap", "--config", str(config), "--secrets-dir", str(tmp_path))
    line = one_line_error(result, 2)
    assert f"{config}:3: influxdb.buckets.live: expected a bucket name" in line


def test_cli_secrets_dir_not_writable(influx_env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(cli(influx_env, "bootstrap", "--secrets-dir", str(blocker / "s")), 1)
    assert f"cannot use secrets directory {blocker / 's'}" in line


def test_a_plan_that_limits_retention_gets_its_limit_said_clearly_and_a_second_run_is_quiet(influx, tmp_path):
    """InfluxDB Cloud's free plan keeps 30 days: bootstrap still sets everything up, and says what that costs."""
    from dataclasses import replace

    from collector.bootstrap import PLAN_LIMIT_SECONDS
    from tests.replay.plan_limit import PlanLimitedInflux

    with PlanLimitedInflux(influx.url) as cloud:
        limited = replace(influx, url=cloud.url)
        lines = run_bootstrap(limited, tmp_path / "secrets")
        assert sorted(cloud.refused) == [0, 7_776_000, 315_360_000]  # meta (forever), live, history
        for name in ("crypto_live", "crypto_history", "crypto_meta"):
            (said,) = [line for line in lines if line.startswith(f"bucket {name}: WARNING")]
            assert "InfluxDB refused a retention of" in said and "exceeds the plan's maximum" in said
            assert "keeps 30 days, the limit of InfluxDB Cloud's free plan" in said
        with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
            kept = {name: retention(bucket) for name, bucket in buckets_by_name(client, influx).items()}
        assert {name: kept[name] for name in EXPECTED_RETENTION} == dict.fromkeys(
            EXPECTED_RETENTION, PLAN_LIMIT_SECONDS
        )
        assert {path.name for path in (tmp_path / "secrets").iterdir()} == {
            "collector.token",
            "grafana.token",
        }

        again = run_bootstrap(limited, tmp_path / "secrets")
        assert not any("corrected" in line for line in again), again
        assert (
            sum("WARNING" in line for line in again) == 3
        )  # still said: the buckets keep less than they should


def test_a_plan_refusing_the_retention_in_words_of_its_own_still_gets_its_limit(influx, tmp_path):
    """Cloud's text for the refusal is not documented (a 403 was seen, "exceeded the user policy limits"): bootstrap
    proves the limit by the retry at 30 days succeeding, not by the words; it never calls it a token problem."""
    from dataclasses import replace

    from collector.bootstrap import PLAN_LIMIT_SECONDS
    from tests.replay.plan_limit import PlanLimitedInflux

    with PlanLimitedInflux(
        influx.url, status=403, refusal="forbidden: exceeds the user policy limits"
    ) as cloud:
        lines = run_bootstrap(replace(influx, url=cloud.url), tmp_path / "secrets")
        assert sorted(cloud.refused) == [0, 7_776_000, 315_360_000]
    assert sum("WARNING: InfluxDB refused a retention of" in line for line in lines) == 3, lines
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        kept = {name: retention(bucket) for name, bucket in buckets_by_name(client, influx).items()}
    assert {name: kept[name] for name in EXPECTED_RETENTION} == dict.fromkeys(
        EXPECTED_RETENTION, PLAN_LIMIT_SECONDS
    )


def test_a_plan_with_too_few_buckets_is_said_plainly_not_blamed_on_the_token(influx_env, influx, tmp_path):
    """InfluxDB Cloud's free plan holds 2 buckets; hodlboard needs 3. The third is refused (403, "creating bucket
    would exceed quota"): bootstrap says what that means and what to do, not "the token may not do this"."""
    from tests.replay.plan_limit import PlanLimitedInflux

    with PlanLimitedInflux(influx.url, status=403, bucket_quota=2) as cloud:
        result = cli(
            {**influx_env, "INFLUXDB_V2_URL": cloud.url}, "bootstrap", "--secrets-dir", str(tmp_path)
        )
    line = one_line_error(result, 2)
    assert "admin token" not in line, line
    assert "creating bucket would exceed quota" in line and "3 buckets" in line, line
    assert "bundled InfluxDB" in line, line
