"""Calling-hours arithmetic in the recipient's local time (zoneinfo), pure.

A window is a wall-clock span that *starts* on an allowed local day (weekday allowed, not a
holiday) at ``start_minute`` and ends at ``end_minute`` the same day, or the next day when
``end_minute <= start_minute`` (the window crosses midnight). Each opening is turned into
one UTC interval ``[open, close)``; ``contains`` and ``next_open`` both work on those
intervals, so whatever ``next_open`` returns, ``contains`` accepts.

DST: a wall time is placed at the *first instant the local clock reads that time or later*.
In a spring-forward gap that is the instant the gap ends (02:30 on a day New York skips
02:00-03:00 opens at 03:00 EDT); in a fall-back repeated hour it is the first pass
(``fold=0``), so a window never opens twice and ``next_open`` never goes backwards.

Unreachable windows: an empty ``weekdays`` is refused at construction; holidays that blot
out every allowed day for a year are found by ``next_open``, which raises ValueError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

MINUTES_PER_DAY = 1440
SEARCH_DAYS = 366
"""How far ahead ``next_open`` looks before declaring the window unreachable."""

_UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers for numbers it cannot place


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _aware_utc(at: datetime, name: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {at!r}")
    return at.astimezone(UTC)


def _offset_at(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset
    return offset


def local_instant(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the clock in ``zone`` reads ``day`` + ``minute`` or later.

    ``minute`` may be 1440 (midnight ending ``day``).
    """
    wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
    # fold=0 is the first pass of a repeated hour; in a gap it uses the offset from before
    # the gap, which lands *after* the transition (PEP 495).
    after = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if after.astimezone(zone).replace(tzinfo=None) == wall:
        return after
    # ``wall`` does not exist: the gap ends at the transition instant, which lies between
    # the fold=1 reading (before the transition) and the fold=0 one. Transitions fall on
    # whole seconds, so a binary search over seconds finds it exactly.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    later_offset = _offset_at(after, zone)
    low, high = 0, int((after - before).total_seconds())  # offset(before + high) is later
    while high - low > 1:
        mid = (low + high) // 2
        if _offset_at(before + timedelta(seconds=mid), zone) == later_offset:
            high = mid
        else:
            low = mid
    return before + timedelta(seconds=high)


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Hours during which a recipient may be rung, in the recipient's local time."""

    start_minute: int  # minutes after local midnight, 0..1439
    end_minute: int  # 1..1440; end <= start means the window crosses midnight
    weekdays: frozenset[int] = frozenset(range(7))  # Monday=0; the local day it STARTS on
    holidays: frozenset[date] = frozenset()  # local dates on which no window starts

    def __post_init__(self) -> None:
        if not _is_int(self.start_minute) or not 0 <= self.start_minute < MINUTES_PER_DAY:
            raise ValueError(f"start_minute must be an int in 0..1439, got {self.start_minute!r}")
        if not _is_int(self.end_minute) or not 0 < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError(f"end_minute must be an int in 1..1440, got {self.end_minute!r}")
        if self.start_minute == self.end_minute:
            raise ValueError("end_minute must differ from start_minute (an empty window)")
        if not isinstance(self.weekdays, frozenset) or not self.weekdays:
            # No day can ever open: refuse now rather than fail at the first retry.
            raise ValueError("weekdays must be a non-empty frozenset of 0..6 (Monday=0)")
        if any(not _is_int(d) or not 0 <= d <= 6 for d in self.weekdays):
            raise ValueError(f"weekdays items must be ints 0..6, got {sorted(self.weekdays)!r}")
        if not isinstance(self.holidays, frozenset) or any(
            isinstance(d, datetime) or not isinstance(d, date) for d in self.holidays
        ):
            raise ValueError("holidays must be a frozenset of dates (not datetimes)")

    @property
    def crosses_midnight(self) -> bool:
        return self.end_minute <= self.start_minute

    def opens_on(self, day: date) -> bool:
        """Whether a window starts on local ``day``."""
        return day.weekday() in self.weekdays and day not in self.holidays

    def interval(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The UTC ``[open, close)`` of the window starting on local ``day``."""
        end_day = day + timedelta(days=1) if self.crosses_midnight else day
        return (
            local_instant(day, self.start_minute, zone),
            local_instant(end_day, self.end_minute, zone),
        )

    def contains(self, at: datetime, zone: ZoneInfo) -> bool:
        at_utc = _aware_utc(at)
        today = at_utc.astimezone(zone).date()
        # A window is under 48 wall hours long, so only windows starting two days back up
        # to one day ahead (a midnight fall-back can make dates run backwards) can hold it.
        for back in (2, 1, 0, -1):
            day = today - timedelta(days=back)
            if self.opens_on(day):
                opened, closed = self.interval(day, zone)
                if opened <= at_utc < closed:
                    return True
        return False

    def next_open(self, at: datetime, zone: ZoneInfo) -> datetime:
        """``at`` (in UTC) if inside a window, else the next window start; aware UTC.

        Raises ValueError if no window opens within 366 days (holidays cover every
        allowed weekday).
        """
        at_utc = _aware_utc(at)
        if self.contains(at_utc, zone):
            return at_utc
        first = at_utc.astimezone(zone).date() - timedelta(days=1)
        for offset in range(SEARCH_DAYS + 2):
            day = first + timedelta(days=offset)
            if self.opens_on(day):
                opened = local_instant(day, self.start_minute, zone)
                if opened >= at_utc:
                    return opened
        raise ValueError(
            f"no calling window opens within {SEARCH_DAYS} days of {at_utc.isoformat()} "
            f"in {zone.key}: holidays exclude every allowed weekday"
        )

    def describe(self) -> str:
        """``09:00-17:00`` style, for explanations."""
        return f"{format_hhmm(self.start_minute)}-{format_hhmm(self.end_minute)}"


def _zone(name: str, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ZoneInfoNotFoundError is a KeyError; callers (config, API) expect ValueError.
        raise ValueError(f"{what} {name!r} is not a known IANA time zone") from None


@lru_cache(maxsize=4096)
def _zone_name_for_number(number: str) -> str | None:
    """The single IANA zone ``phonenumbers`` gives for ``number``, or None if not one."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None  # an operator-allowed extension, say: not placeable
    zones = phone_timezone.time_zones_for_number(parsed)
    if len(zones) == 1 and zones[0] != _UNKNOWN_ZONE:
        return str(zones[0])
    return None


def recipient_zone(number: str, explicit: str | None, default: str) -> ZoneInfo:
    """The recipient's zone: ``explicit`` if given, else the number's only zone, else default.

    A number whose prefix spans several zones (most of +1 area codes do not; +7 does) or
    none falls back to ``default``, since guessing could ring someone at 3 a.m.
    """
    if explicit is not None:
        return _zone(explicit, "time zone")
    name = _zone_name_for_number(number)
    if name is not None:
        return _zone(name, "time zone")
    return _zone(default, "default time zone")


_HHMM = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])")


def parse_hhmm(text: str) -> int:
    """``"09:30"`` -> 570; ``"24:00"`` -> 1440 (a window ending at midnight)."""
    match = _HHMM.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"time {text!r} must be HH:MM (00:00..24:00)")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > MINUTES_PER_DAY:
        raise ValueError(f"time {text!r} is after 24:00")
    return minutes


def format_hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
