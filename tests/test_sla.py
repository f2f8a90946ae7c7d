from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from deals.sla import add_working_hours, working_hours_between

AMS = ZoneInfo("Europe/Amsterdam")
NO_HOLIDAYS: frozenset[date] = frozenset()


def at(*args):
    return datetime(*args, tzinfo=AMS)


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (at(2026, 11, 20, 16, 0), 48, at(2026, 11, 24, 16, 0)),  # Friday afternoon -> Tuesday afternoon
        (at(2026, 11, 23, 9, 0), 48, at(2026, 11, 25, 9, 0)),  # Monday -> Wednesday
        (at(2026, 11, 23, 9, 0), 24, at(2026, 11, 24, 9, 0)),
        (at(2026, 11, 21, 10, 0), 48, at(2026, 11, 25, 0, 0)),  # Saturday: the clock starts Monday 00:00
        (at(2026, 11, 19, 12, 0), 36, at(2026, 11, 21, 0, 0)),  # Thursday noon + 36 = Friday's end
        (at(2026, 11, 20, 23, 30), 1, at(2026, 11, 23, 0, 30)),
        (at(2026, 11, 23, 9, 0), 0, at(2026, 11, 23, 9, 0)),
    ],
)
def test_add_working_hours_skips_weekends(start, hours, due):
    assert add_working_hours(start, hours, holidays=NO_HOLIDAYS, tz=AMS) == due


def test_holidays_do_not_count():
    christmas = {date(2026, 12, 25), date(2026, 12, 28)}  # a Friday and the Monday after
    start = at(2026, 12, 24, 10, 0)  # Thursday
    assert add_working_hours(start, 48, holidays=christmas, tz=AMS) == at(2026, 12, 30, 10, 0)
    assert working_hours_between(start, at(2026, 12, 30, 10, 0), holidays=christmas, tz=AMS) == Decimal("48.00")


def test_eu_clock_change_falls_on_a_weekend_and_changes_nothing():
    start = at(2026, 3, 27, 12, 0)  # Friday before the change (Sunday 29 March 2026, 02:00 -> 03:00)
    due = add_working_hours(start, 48, holidays=NO_HOLIDAYS, tz=AMS)
    assert due == at(2026, 3, 31, 12, 0)
    elapsed = due.astimezone(UTC) - start.astimezone(UTC)
    assert elapsed == timedelta(days=4, hours=-1)  # the lost wall-clock hour was a weekend hour


def test_a_23_hour_working_day_counts_23_hours():
    # EU changes fall on Sundays; Egypt's fall on working days. Cairo: Friday 25 April 2025, 00:00 -> 01:00.
    cairo = ZoneInfo("Africa/Cairo")
    start = datetime(2025, 4, 25, 0, 0, tzinfo=cairo)
    end = datetime(2025, 4, 26, 0, 0, tzinfo=cairo)
    assert working_hours_between(start, end, holidays=NO_HOLIDAYS, tz=cairo) == Decimal("23.00")
    assert add_working_hours(start, 23, holidays=NO_HOLIDAYS, tz=cairo) == end


def test_autumn_back_over_a_working_night():
    cairo = ZoneInfo("Africa/Cairo")  # back to winter time on Thursday 30 October 2025, 24:00 -> 23:00
    start = datetime(2025, 10, 30, 12, 0, tzinfo=cairo)
    end = datetime(2025, 10, 31, 12, 0, tzinfo=cairo)
    assert working_hours_between(start, end, holidays=NO_HOLIDAYS, tz=cairo) == Decimal("25.00")


def test_working_hours_between_over_a_weekend():
    assert working_hours_between(at(2026, 11, 20, 16, 0), at(2026, 11, 24, 16, 0), holidays=NO_HOLIDAYS, tz=AMS) == 48
    assert working_hours_between(at(2026, 11, 21, 0, 0), at(2026, 11, 23, 0, 0), holidays=NO_HOLIDAYS, tz=AMS) == 0
    assert working_hours_between(at(2026, 11, 24, 0, 0), at(2026, 11, 23, 0, 0), holidays=NO_HOLIDAYS, tz=AMS) == 0


def test_inverse_property_on_a_grid():
    holidays = {date(2026, 12, 25)}
    start = at(2026, 12, 18, 7, 45)
    for hours in range(0, 120, 7):
        due = add_working_hours(start, hours, holidays=holidays, tz=AMS)
        if hours:
            assert working_hours_between(start, due, holidays=holidays, tz=AMS) == Decimal(hours)


def test_naive_start_is_refused():
    with pytest.raises(ValueError):
        add_working_hours(datetime(2026, 1, 1), 1, holidays=NO_HOLIDAYS, tz=AMS)
