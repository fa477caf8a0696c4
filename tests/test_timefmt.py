from __future__ import annotations

import datetime as dt

import pytest

from writer.timefmt import date_parts, parse_time, rfc3339


@pytest.mark.parametrize("ts_ns", [
    0, 1, 999, 1_000, 1_479_419_604_806_909_714, 1_479_419_604_000_000_000,
    1_700_000_000_999_999_999, 253_402_300_799_999_999_999,
])
def test_rfc3339_is_utc_with_microseconds(ts_ns: int) -> None:
    sec, ns = divmod(ts_ns, 1_000_000_000)
    want = dt.datetime.fromtimestamp(sec, dt.UTC).replace(microsecond=ns // 1000)
    assert rfc3339(ts_ns) == want.isoformat().replace("+00:00", "Z").replace(
        f"{want:%S}Z", f"{want:%S}.000000Z")


def test_rfc3339_cached_seconds_give_each_instant_its_own_fraction() -> None:
    base = 1_479_419_604_000_000_000
    assert [rfc3339(base + i * 250_000_000) for i in range(4)] == [
        "2016-11-17T21:53:24.000000Z", "2016-11-17T21:53:24.250000Z",
        "2016-11-17T21:53:24.500000Z", "2016-11-17T21:53:24.750000Z"]


def test_times_out_of_range_are_clamped_not_fatal() -> None:
    # a damaged capture's timestamps: before 1970, past year 9999
    assert rfc3339(-1) == "1970-01-01T00:00:00.999999Z"
    assert rfc3339(10**25).startswith("9999-12-31T23:59:59.")
    assert date_parts(-5)[0] == "1970" and date_parts(10**25)[0] == "9999"


def test_date_parts() -> None:
    assert date_parts(1_479_419_604_806_909_714) == ("2016", "11", "17", "20161117T215324")


@pytest.mark.parametrize("ts_ns", [0, 1_479_419_604_806_909_000, 1_700_000_000_000_001_000,
                                   253_402_300_799_999_999_000])
def test_parse_time_inverts_rfc3339(ts_ns: int) -> None:
    assert parse_time(rfc3339(ts_ns)) == ts_ns


def test_parse_time_other_forms_and_errors() -> None:
    assert parse_time("2016-11-17T21:53:24.8Z") == 1_479_419_604_800_000_000
    assert parse_time("") is None and parse_time(None) is None
    for bad in ("2016-13-17T21:53:24.806909Z", "x" * 27, "2016-11-17T21:53:24.80690xZ",
                "2016-11-17T21:53:24.\u0661\u0662\u0663\u0664\u0665\u0666Z",
                "2016-11-17 21:53:24"):
        with pytest.raises(ValueError):
            parse_time(bad)
    # before 1970, with a fraction other than rfc3339's six digits (strptime's path)
    assert parse_time("1969-12-31T23:59:59.5Z") == -500_000_000


def _strptime_reference(text: str) -> int | str:
    try:
        t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "error"
    d = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds) * 1000


@pytest.mark.parametrize("seconds", [
    "2016-11-17T21:53:24", "2016-02-29T23:59:59", "2015-02-29T00:00:00", "2016-02-30T00:00:00",
    "2016-11-17T24:00:00", "2016-11-17T23:60:00", "2016-11-17T23:59:60", "0000-01-01T00:00:00",
    "0001-01-01T00:00:00", "9999-12-31T23:59:59", "2016-00-17T21:53:24", "2016-11-00T21:53:24",
    "2016-11-17 21:53:24", "2016-1a-17T21:53:24", "+016-11-17T21:53:24", " 2016-1-7T21:53:24",
    "\u0662\u0660\u0661\u0666-11-17T21:53:24", "2016/11/17T21:53:24"])
def test_parse_time_reads_seconds_as_strptime_does(seconds: str) -> None:
    text = seconds + ".806909Z"
    try:
        got: int | str | None = parse_time(text)
    except ValueError:
        got = "error"
    assert got == _strptime_reference(text)
