"""Calling-hours windows: tables for each rule and DST case, hypothesis properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ami_listener.core import windows
from ami_listener.core.windows import (
    CallingWindow,
    format_hhmm,
    local_instant,
    parse_hhmm,
    recipient_zone,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
UTCZ = ZoneInfo("UTC")
WEEKDAYS = frozenset(range(5))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# ---- parse_hhmm ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("00:00", 0),
        ("09:30", 570),
        ("9:30", 570),
        ("23:59", 1439),
        ("24:00", 1440),
        (" 08:05", 485),
    ],
)
def test_parse_hhmm_accepts(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes


@pytest.mark.parametrize(
    "text", ["24:01", "25:00", "9", "09:60", "", "ab:cd", "09:3", "٠٩:٣٠", "09:30:00", 930]
)
def test_parse_hhmm_refuses(text: object) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|after 24:00"):
        parse_hhmm(text)  # type: ignore[arg-type]


def test_format_hhmm_round_trips() -> None:
    assert [format_hhmm(parse_hhmm(t)) for t in ("00:00", "09:05", "24:00")] == [
        "00:00",
        "09:05",
        "24:00",
    ]
    assert CallingWindow(540, 1020).describe() == "09:00-17:00"


# ---- construction ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start_minute": -1, "end_minute": 60}, "start_minute"),
        ({"start_minute": 1440, "end_minute": 60}, "start_minute"),
        ({"start_minute": True, "end_minute": 60}, "start_minute"),
        ({"start_minute": 9.5, "end_minute": 60}, "start_minute"),
        ({"start_minute": 0, "end_minute": 0}, "end_minute"),
        ({"start_minute": 0, "end_minute": 1441}, "end_minute"),
        ({"start_minute": 60, "end_minute": 60}, "end_minute"),
        ({"start_minute": 0, "end_minute": 60, "weekdays": frozenset()}, "weekdays"),
        ({"start_minute": 0, "end_minute": 60, "weekdays": {1, 2}}, "weekdays"),
        ({"start_minute": 0, "end_minute": 60, "weekdays": frozenset({7})}, "weekdays"),
        ({"start_minute": 0, "end_minute": 60, "weekdays": frozenset({-1})}, "weekdays"),
        (
            {"start_minute": 0, "end_minute": 60, "holidays": frozenset({utc(2024, 1, 1)})},
            "holidays",
        ),
        ({"start_minute": 0, "end_minute": 60, "holidays": {date(2024, 1, 1)}}, "holidays"),
        ({"start_minute": 0, "end_minute": 60, "holidays": frozenset({"2024-01-01"})}, "holidays"),
    ],
)
def test_window_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CallingWindow(**kwargs)  # type: ignore[arg-type]


def test_naive_datetime_is_refused() -> None:
    window = CallingWindow(540, 1020)
    with pytest.raises(ValueError, match="aware"):
        window.contains(datetime(2024, 1, 8, 12), UTCZ)
    with pytest.raises(ValueError, match="aware"):
        window.next_open(datetime(2024, 1, 8, 12), UTCZ)


# ---- contains / next_open tables ---------------------------------------------------
DAY = CallingWindow(540, 1020)  # 09:00-17:00 every day
NIGHT = CallingWindow(1320, 360)  # 22:00-06:00, crosses midnight
TO_MIDNIGHT = CallingWindow(1080, 1440)  # 18:00-24:00
OFFICE = CallingWindow(540, 1020, weekdays=WEEKDAYS)  # Mon-Fri
NIGHT_WEEKDAYS = CallingWindow(1320, 360, weekdays=frozenset({4}))  # starts Friday only
XMAS = CallingWindow(540, 1020, holidays=frozenset({date(2024, 12, 25), date(2024, 12, 26)}))

# 2024-01-08 is a Monday; 2024-01-12 a Friday.
CASES = [
    # (name, window, zone, at, contains, next_open)
    ("day before", DAY, UTCZ, utc(2024, 1, 8, 8, 59), False, utc(2024, 1, 8, 9)),
    ("day at start", DAY, UTCZ, utc(2024, 1, 8, 9), True, utc(2024, 1, 8, 9)),
    ("day inside", DAY, UTCZ, utc(2024, 1, 8, 16, 59, 59), True, utc(2024, 1, 8, 16, 59, 59)),
    ("day at end", DAY, UTCZ, utc(2024, 1, 8, 17), False, utc(2024, 1, 9, 9)),
    ("day evening", DAY, UTCZ, utc(2024, 1, 8, 23), False, utc(2024, 1, 9, 9)),
    ("night evening", NIGHT, UTCZ, utc(2024, 1, 8, 23), True, utc(2024, 1, 8, 23)),
    ("night early", NIGHT, UTCZ, utc(2024, 1, 9, 5, 59), True, utc(2024, 1, 9, 5, 59)),
    ("night closed", NIGHT, UTCZ, utc(2024, 1, 9, 6), False, utc(2024, 1, 9, 22)),
    ("night afternoon", NIGHT, UTCZ, utc(2024, 1, 9, 12), False, utc(2024, 1, 9, 22)),
    ("to midnight in", TO_MIDNIGHT, UTCZ, utc(2024, 1, 8, 23, 59), True, utc(2024, 1, 8, 23, 59)),
    ("to midnight out", TO_MIDNIGHT, UTCZ, utc(2024, 1, 9, 0), False, utc(2024, 1, 9, 18)),
    ("office saturday", OFFICE, UTCZ, utc(2024, 1, 13, 10), False, utc(2024, 1, 15, 9)),
    ("office friday late", OFFICE, UTCZ, utc(2024, 1, 12, 17), False, utc(2024, 1, 15, 9)),
    ("office monday", OFFICE, UTCZ, utc(2024, 1, 15, 10), True, utc(2024, 1, 15, 10)),
    # A window belongs to the day it starts on: Friday 22:00 runs into Saturday 06:00.
    ("night fri->sat", NIGHT_WEEKDAYS, UTCZ, utc(2024, 1, 13, 3), True, utc(2024, 1, 13, 3)),
    ("night sat->sun", NIGHT_WEEKDAYS, UTCZ, utc(2024, 1, 14, 3), False, utc(2024, 1, 19, 22)),
    ("night thu", NIGHT_WEEKDAYS, UTCZ, utc(2024, 1, 11, 23), False, utc(2024, 1, 12, 22)),
    ("holiday", XMAS, UTCZ, utc(2024, 12, 25, 10), False, utc(2024, 12, 27, 9)),
    ("eve of holiday", XMAS, UTCZ, utc(2024, 12, 24, 18), False, utc(2024, 12, 27, 9)),
    # Local time: 09:00 New York is 14:00Z in winter (EST) and 13:00Z in summer (EDT).
    ("NY winter", DAY, NY, utc(2024, 1, 8, 13, 59), False, utc(2024, 1, 8, 14)),
    ("NY summer", DAY, NY, utc(2024, 7, 8, 12, 59), False, utc(2024, 7, 8, 13)),
    ("NY summer in", DAY, NY, utc(2024, 7, 8, 13), True, utc(2024, 7, 8, 13)),
    ("NY local date", OFFICE, NY, utc(2024, 1, 13, 3), False, utc(2024, 1, 15, 14)),
    ("London summer", DAY, LONDON, utc(2024, 7, 8, 7, 59), False, utc(2024, 7, 8, 8)),
    # Spring forward, New York 2024-03-10: 02:00 EST -> 03:00 EDT (07:00Z).
    # A start at 02:30 does not exist: the window opens when the gap ends.
    ("NY gap start", CallingWindow(150, 600), NY, utc(2024, 3, 10, 5), False, utc(2024, 3, 10, 7)),
    (
        "NY gap next day",
        CallingWindow(150, 600),
        NY,
        utc(2024, 3, 11, 5),
        False,
        utc(2024, 3, 11, 6, 30),
    ),
    # An end inside the gap closes the window when the gap ends.
    (
        "NY gap end in",
        CallingWindow(60, 150),
        NY,
        utc(2024, 3, 10, 6, 59),
        True,
        utc(2024, 3, 10, 6, 59),
    ),
    ("NY gap end out", CallingWindow(60, 150), NY, utc(2024, 3, 10, 7), False, utc(2024, 3, 11, 5)),
    # Fall back, New York 2024-11-03: 02:00 EDT -> 01:00 EST (06:00Z); 01:xx happens twice.
    # The window opens on the first pass and does not open again on the second.
    (
        "NY fold first",
        CallingWindow(90, 180),
        NY,
        utc(2024, 11, 3, 5),
        False,
        utc(2024, 11, 3, 5, 30),
    ),
    (
        "NY fold second in",
        CallingWindow(90, 180),
        NY,
        utc(2024, 11, 3, 6, 45),
        True,
        utc(2024, 11, 3, 6, 45),
    ),
    (
        "NY fold window over",
        CallingWindow(60, 90),
        NY,
        utc(2024, 11, 3, 6, 15),
        False,
        utc(2024, 11, 4, 6),
    ),
    (
        "NY fold first in",
        CallingWindow(60, 90),
        NY,
        utc(2024, 11, 3, 5, 15),
        True,
        utc(2024, 11, 3, 5, 15),
    ),
    # Spring forward, London 2024-03-31: 01:00 GMT -> 02:00 BST (01:00Z).
    ("London gap", CallingWindow(90, 600), LONDON, utc(2024, 3, 31, 0), False, utc(2024, 3, 31, 1)),
    (
        "London gap after",
        CallingWindow(90, 600),
        LONDON,
        utc(2024, 3, 31, 1),
        True,
        utc(2024, 3, 31, 1),
    ),
    # Fall back, London 2024-10-27: 02:00 BST -> 01:00 GMT (01:00Z).
    (
        "London fold",
        CallingWindow(90, 600),
        LONDON,
        utc(2024, 10, 27, 0),
        False,
        utc(2024, 10, 27, 0, 30),
    ),
    (
        "London fold over",
        CallingWindow(60, 90),
        LONDON,
        utc(2024, 10, 27, 1, 10),
        False,
        utc(2024, 10, 28, 1),
    ),
    # A night window spanning the fall-back lasts one hour longer in UTC.
    ("NY night fold", NIGHT, NY, utc(2024, 11, 3, 10, 59), True, utc(2024, 11, 3, 10, 59)),
    ("NY night fold end", NIGHT, NY, utc(2024, 11, 3, 11), False, utc(2024, 11, 4, 3)),
]


@pytest.mark.parametrize(
    ("window", "zone", "at", "inside", "opens"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_contains_and_next_open(
    window: CallingWindow, zone: ZoneInfo, at: datetime, inside: bool, opens: datetime
) -> None:
    assert window.contains(at, zone) is inside
    result = window.next_open(at, zone)
    assert result == opens
    assert result.tzinfo is UTC
    assert window.contains(result, zone)


def test_next_open_accepts_any_offset_and_answers_utc() -> None:
    at = datetime(2024, 1, 8, 3, 0, tzinfo=NY)  # 08:00Z
    assert DAY.next_open(at, UTCZ) == utc(2024, 1, 8, 9)
    assert DAY.next_open(at, UTCZ).tzinfo is UTC


def test_local_instant_in_gap_is_gap_end_and_in_fold_is_first_pass() -> None:
    assert local_instant(date(2024, 3, 10), 150, NY) == utc(2024, 3, 10, 7)
    assert local_instant(date(2024, 11, 3), 90, NY) == utc(2024, 11, 3, 5, 30)
    assert local_instant(date(2024, 1, 8), 1440, NY) == utc(2024, 1, 9, 5)
    # A 30-minute DST shift (Lord Howe, 2024-10-06 02:00 -> 02:30).
    assert local_instant(date(2024, 10, 6), 135, ZoneInfo("Australia/Lord_Howe")) == utc(
        2024, 10, 5, 15, 30
    )


def test_unreachable_window_raises_in_next_open() -> None:
    start = date(2024, 1, 1)
    year = frozenset(start + timedelta(days=n) for n in range(400))
    window = CallingWindow(540, 1020, weekdays=frozenset({0}), holidays=year)
    assert not window.contains(utc(2024, 1, 8, 10), UTCZ)
    with pytest.raises(ValueError, match="no calling window opens within 366 days"):
        window.next_open(utc(2024, 1, 1), UTCZ)


# ---- recipient_zone ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "explicit", "default", "zone"),
    [
        ("+12025550123", None, "UTC", "America/New_York"),
        ("+442079460000", None, "UTC", "Europe/London"),
        ("+33123456789", None, "UTC", "Europe/Paris"),
        ("+15005550006", None, "Europe/Paris", "Europe/Paris"),  # +1 500: many zones
        ("+15001234567", None, "Asia/Tokyo", "Asia/Tokyo"),  # phonenumbers: Etc/Unknown
        ("+79161234567", None, "Europe/Berlin", "Europe/Berlin"),  # +7: 16 zones
        ("6001", None, "Europe/Berlin", "Europe/Berlin"),  # an allowed extension
        ("+12025550123", "Asia/Kolkata", "UTC", "Asia/Kolkata"),  # explicit wins
    ],
)
def test_recipient_zone(number: str, explicit: str | None, default: str, zone: str) -> None:
    assert recipient_zone(number, explicit, default) == ZoneInfo(zone)


@pytest.mark.parametrize(
    ("explicit", "default", "message"),
    [
        ("Mars/Olympus", "UTC", "time zone 'Mars/Olympus'"),
        ("../etc/passwd", "UTC", "time zone"),
        (None, "Nowhere/Zone", "default time zone 'Nowhere/Zone'"),
    ],
)
def test_recipient_zone_refuses_unknown_names(
    explicit: str | None, default: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        recipient_zone("+15005550006", explicit, default)


def test_recipient_zone_caches_number_lookups() -> None:
    lookup = windows._zone_name_for_number
    recipient_zone("+12025550199", None, "UTC")
    hits = lookup.cache_info().hits
    assert recipient_zone("+12025550199", None, "UTC") == NY
    assert lookup.cache_info().hits == hits + 1


# ---- properties --------------------------------------------------------------------
ZONES = [UTCZ, NY, LONDON, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")]

# Anywhere in five years, and often within two days of a DST transition of ZONES.
TRANSITIONS = [utc(2024, 3, 10, 7), utc(2024, 11, 3, 6), utc(2024, 3, 31, 1), utc(2024, 10, 27, 1),
               utc(2024, 4, 6, 15), utc(2024, 10, 5, 15, 30)]  # fmt: skip
instants = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
) | st.builds(
    lambda at, us: at + timedelta(microseconds=us),
    st.sampled_from(TRANSITIONS),
    st.integers(-2 * 86_400_000_000, 2 * 86_400_000_000),
)


@st.composite
def calling_windows(draw: st.DrawFn) -> CallingWindow:
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(1, 1440).filter(lambda e: e != start))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    holidays = draw(st.frozensets(st.dates(date(2023, 1, 1), date(2028, 1, 31)), max_size=6))
    return CallingWindow(start, end, days, holidays)


@settings(deadline=None)
@given(calling_windows(), st.sampled_from(ZONES), instants)
def test_next_open_is_inside_and_never_earlier(
    window: CallingWindow, zone: ZoneInfo, at: datetime
) -> None:
    opened = window.next_open(at, zone)
    assert opened >= at
    assert window.contains(opened, zone)
    assert (opened == at) is window.contains(at, zone)
    # Nothing was open between `at` and the returned start.
    just_before = opened - timedelta(microseconds=1)
    if opened != at and just_before >= at:
        assert not window.contains(just_before, zone)


@settings(deadline=None)
@given(calling_windows(), st.sampled_from(ZONES), instants, st.integers(0, 10**11))
def test_next_open_is_monotonic(
    window: CallingWindow, zone: ZoneInfo, at: datetime, later_us: int
) -> None:
    later = at + timedelta(microseconds=later_us)
    assert window.next_open(at, zone) <= window.next_open(later, zone)


@settings(deadline=None)
@given(calling_windows(), instants)
def test_contains_matches_wall_clock_in_utc(window: CallingWindow, at: datetime) -> None:
    # Without DST the UTC intervals must equal the plain wall-clock reading.
    minute = at.hour * 60 + at.minute
    today, yesterday = at.date(), at.date() - timedelta(days=1)
    if window.crosses_midnight:
        expected = (window.opens_on(today) and minute >= window.start_minute) or (
            window.opens_on(yesterday) and minute < window.end_minute
        )
    else:
        expected = window.opens_on(today) and window.start_minute <= minute < window.end_minute
    assert window.contains(at, UTCZ) is expected
