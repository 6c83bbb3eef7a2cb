"""The reproduction of Grafana's substitution against the values Grafana's own code and tests give."""

import pytest

from tests.grafana_flux import (
    ALL_VALUE,
    Datasource,
    Variable,
    backend_macros,
    calculate_interval_ms,
    format_interval,
    go_duration,
    interpolate_query_expr,
    interpolate_variables,
    interval_to_ms,
    metric_find_values,
    parse_annotated_csv,
    rfc3339_nano,
    round_interval,
)

FROM_MS, TO_MS = 1763705600120, 1763709200000  # 2025-11-21T06:13:20.12Z .. +1h - 0.12s
PAIRS = ["BTC-USD", "ETH/USD"]


def variables(current, multi=True, include_all=True, all_value=None) -> dict[str, Variable]:
    return {"pair": Variable("pair", PAIRS, current, multi, include_all, all_value)}


def render(text, current, **options) -> str:
    return interpolate_variables(text, variables(current, **options), FROM_MS, TO_MS)


@pytest.mark.parametrize(
    ("text", "current", "expected"),
    [
        ("$pair", PAIRS, "{BTC-USD,ETH/USD}"),  # glob is the default format
        ("$pair", ["BTC-USD"], "BTC-USD"),
        ("${pair}", "BTC-USD", "BTC-USD"),
        ("[[pair]]", PAIRS, "{BTC-USD,ETH/USD}"),
        ("${pair:regex}", PAIRS, "(BTC-USD|ETH\\/USD)"),
        ("${pair:regex}", ["ETH/USD"], "ETH\\/USD"),
        ("${pair:json}", PAIRS, '["BTC-USD","ETH/USD"]'),
        ("${pair:json}", ["BTC-USD"], '["BTC-USD"]'),
        ("${pair:json}", "BTC-USD", "BTC-USD"),  # a single string passes through unquoted
        ("${pair:csv}", PAIRS, "BTC-USD,ETH/USD"),
        ("${pair:pipe}", PAIRS, "BTC-USD|ETH/USD"),
        ("${pair:doublequote}", PAIRS, '"BTC-USD","ETH/USD"'),
        ("${pair:singlequote}", "BTC-USD", "'BTC-USD'"),
        ("${pair:join:;}", PAIRS, "BTC-USD;ETH/USD"),
        ("${pair:nonsense}", PAIRS, "{BTC-USD,ETH/USD}"),  # unknown format: glob
        ("${pair:text}", ALL_VALUE, "All"),
        ("${pair:regex}", ALL_VALUE, "(BTC-USD|ETH\\/USD)"),  # All without allValue: every option
        ("$unknown ${r.pair}", PAIRS, "$unknown ${r.pair}"),  # unknown names stay as they are
        ("$__interval $__interval_ms", PAIRS, "$__interval $__interval_ms"),  # left for the backend
        ("$__from ${__to:date:seconds}", PAIRS, "1763705600120 1763709200"),
        ("${__from:date}", PAIRS, "2025-11-21T06:13:20.120Z"),
    ],
)
def test_frontend_interpolation(text, current, expected):
    assert render(text, current) == expected


def test_a_custom_all_value_is_inserted_raw_in_every_format():
    assert render("${pair:regex} ${pair:json} $pair", ALL_VALUE, all_value=".*") == ".* .* .*"
    assert render("${pair:text}", ALL_VALUE, all_value=".*") == "All"


def test_a_repeated_panel_gets_one_string():
    text = interpolate_variables("${pair:json}", variables(PAIRS), FROM_MS, TO_MS, local={"pair": "ETH/USD"})
    assert text == "ETH/USD"


def test_variable_queries_use_the_datasource_format_unless_one_is_named():
    multi = interpolate_variables("$pair", variables(PAIRS), 0, 1, default_format=interpolate_query_expr)
    single = interpolate_variables(
        "$pair",
        variables("ETH/USD", multi=False, include_all=False),
        0,
        1,
        default_format=interpolate_query_expr,
    )
    named = interpolate_variables(
        "${pair:csv}", variables(PAIRS), 0, 1, default_format=interpolate_query_expr
    )
    assert (multi, single, named) == ("(BTC-USD|ETH\\/USD)", "ETH/USD", "BTC-USD,ETH/USD")


@pytest.mark.parametrize(
    ("span_ms", "points", "limit", "expected"),
    [
        (3600_000, 1240, None, "2s"),
        (3600_000, 1240, "10s", "10s"),
        (7 * 86400_000, 1240, None, "10m0s"),
        (365 * 86400_000, 1240, None, "6h0m0s"),
        (3600_000, 100, None, "30s"),  # grafanalib's default maxDataPoints
        (7 * 86400_000, 100, None, "2h0m0s"),
        (365 * 86400_000, 100, None, "24h0m0s"),
        (60_000, 1000, None, "50ms"),
    ],
)
def test_window_period_is_the_rounded_interval_as_a_go_duration(span_ms, points, limit, expected):
    assert go_duration(calculate_interval_ms(0, span_ms, points, limit)) == expected


def test_round_interval_edges_and_interval_strings():
    assert [round_interval(ms) for ms in (9, 10, 12499, 12500, 3_628_800_000)] == [
        1,
        10,
        10000,
        15000,
        31536000000,
    ]
    assert (interval_to_ms("10s"), interval_to_ms("15"), interval_to_ms("2m")) == (10000, 15000, 120000)
    with pytest.raises(ValueError, match="Invalid interval"):
        interval_to_ms(">10s")


def test_go_duration_and_format_interval():
    assert [go_duration(ms) for ms in (500, 1000, 1500, 90000, 3600000)] == [
        "500ms",
        "1s",
        "1.5s",
        "1m30s",
        "1h0m0s",
    ]
    assert [format_interval(ms) for ms in (90000, 21600000, 86400000, 31536000000, 0)] == [
        "1m",
        "6h",
        "1d",
        "1y",
        "1ms",
    ]


def test_rfc3339_nano_trims_the_fraction():
    assert rfc3339_nano(FROM_MS) == "2025-11-21T06:13:20.12Z"
    assert rfc3339_nano(TO_MS) == "2025-11-21T07:13:20Z"


DATASOURCE = Datasource("uid", "hodlboard", "crypto_live")


def test_backend_macros_replace_any_prefix_and_leave_other_members():
    flux = (
        "from(bucket: v.defaultBucket) |> range(start: v.timeRangeStart, stop: v.timeRangeStop) "
        "|> aggregateWindow(every: window.windowPeriod) |> filter(fn: (r) => r.bucket == XYZ.organization "
        'and r._field == "x") |> map(fn: (r) => math.abs(x: r._value)) // $__interval_ms $__interval'
    )
    assert backend_macros(flux, DATASOURCE, FROM_MS, TO_MS, 90000) == (
        'from(bucket: "crypto_live") |> range(start: 2025-11-21T06:13:20.12Z, stop: 2025-11-21T07:13:20Z) '
        '|> aggregateWindow(every: 1m30s) |> filter(fn: (r) => "crypto_live" == "hodlboard" '
        'and r._field == "x") |> map(fn: (r) => math.abs(x: r._value)) // 90000 1m'
    )


def test_an_interval_of_zero_is_one_millisecond_and_an_empty_organization_fails():
    assert backend_macros("v.windowPeriod", DATASOURCE, 0, 1, 0) == "1ms"
    with pytest.raises(ValueError, match="missing organization"):
        backend_macros("x", Datasource("uid", "", "b"), 0, 1, 1000)


def test_annotated_csv_tables_and_the_error_table_of_a_200_stream():
    ok = (
        "#datatype,string,long,string\n#group,false,false,false\n#default,_result,,\n"
        ",result,table,_value\n,,0,BTC-USD\n,,0,ETH-USD\n\n"
    )
    result = parse_annotated_csv(ok)
    assert (result.error, result.rows, metric_find_values(result)) == (None, 2, ["BTC-USD", "ETH-USD"])
    failed = (
        "#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n"
        ",unsupported input type for mean aggregate: string,\n\n"
    )
    assert parse_annotated_csv(failed).error == "unsupported input type for mean aggregate: string"
