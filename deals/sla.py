"""The review clock: working hours between two moments, and a moment plus working hours.

A working hour is any real (elapsed) hour that falls on a working day in the programme's time
zone: Monday to Friday, except the holidays listed in the admin. Days are counted whole (the
review promise is "within 48 working hours", not office hours), so Friday 16:00 plus 48 working
hours is Tuesday 16:00. Day boundaries are local midnights, which makes daylight-saving changes
come out right: a day of 23 or 25 real hours counts as 23 or 25 working hours.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    # In UTC: Python subtracts two datetimes of one tzinfo as wall-clock times, which is wrong
    # across a daylight-saving change; in UTC the arithmetic is elapsed time.
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def is_working_day(day: date, holidays: Collection[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_working_hours(start: datetime, hours: float | int, *, holidays: Collection[date], tz: ZoneInfo) -> datetime:
    """The moment at which `hours` working hours have passed since `start` (an aware datetime)."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    remaining = timedelta(hours=hours)
    moment = start.astimezone(UTC)
    day = start.astimezone(tz).date()
    # A clock started on a non-working day only begins at the next working midnight.
    for _ in range(3700):  # ten years of days: a bound that no real SLA reaches
        day_start = _local_midnight(day, tz)
        day_end = _local_midnight(day + timedelta(days=1), tz)
        if is_working_day(day, holidays):
            begin = max(moment, day_start)
            available = day_end - begin
            if remaining <= available:
                return (begin + remaining).astimezone(tz)
            remaining -= available
        day += timedelta(days=1)
    raise ValueError("no working days found within ten years: check the holiday list")


def working_hours_between(start: datetime, end: datetime, *, holidays: Collection[date], tz: ZoneInfo) -> Decimal:
    """Working hours from `start` to `end` (0 when end is not after start), to two decimals."""
    if end <= start:
        return Decimal("0.00")
    total = timedelta()
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        if is_working_day(day, holidays):
            begin = max(start, _local_midnight(day, tz))
            finish = min(end, _local_midnight(day + timedelta(days=1), tz))
            if finish > begin:
                total += finish - begin
        day += timedelta(days=1)
    return (Decimal(total.total_seconds()) / Decimal(3600)).quantize(Decimal("0.01"))
