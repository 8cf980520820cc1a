"""Cron expressions as nightwarden writes them: five fields, days of the week as names.

APScheduler 3.x reads a numeric day of week with 0 = Monday where cron reads 0 = Sunday,
so a number there is refused; and cron fires when either the day of month or the day of
week matches where APScheduler needs both, so restricting both is refused too. What is
left means the same to cron, to APScheduler and (converted) to systemd's OnCalendar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
FIELDS = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
]
_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(\d+))?$")


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Cron:
    text: str
    fields: tuple[str, ...]
    values: tuple[frozenset, ...]  # the values each field allows

    def apscheduler_kwargs(self) -> dict:
        minute, hour, dom, month, dow = self.fields
        return {"minute": minute, "hour": hour, "day": dom, "month": month, "day_of_week": dow}

    def on_calendar(self) -> str:
        """systemd's OnCalendar= for the same times."""
        minute, hour, dom, month, dow = self.fields
        parts = []
        if dow != "*":
            parts.append(",".join(_sd_days(item) for item in dow.split(",")))
        parts.append(f"*-{_sd(month, self.values[3], 1, 12)}-{_sd(dom, self.values[2], 1, 31)}")
        parts.append(f"{_sd(hour, self.values[1], 0, 23)}:{_sd(minute, self.values[0], 0, 59)}:00")
        return " ".join(parts)


def _value(token: str, index: int, text: str) -> int:
    name, low, high = FIELDS[index]
    if index == 4:
        if token.isdigit():
            raise CronError(
                f"{text!r}: write the day of week as a name (sun, mon-fri), not "
                f"{token}: APScheduler reads 0 as Monday, cron as Sunday"
            )
        if token not in DAYS:
            raise CronError(f"{text!r}: unknown day of week {token!r} (sun, mon, ... sat)")
        return DAYS.index(token)
    if index == 3 and token in MONTHS:
        return MONTHS.index(token) + 1
    if not token.isdigit():
        raise CronError(f"{text!r}: {name} must be a number from {low} to {high}, not {token!r}")
    value = int(token)
    if not low <= value <= high:
        raise CronError(f"{text!r}: {name} {value} is out of range {low}-{high}")
    return value


def parse(text: str) -> Cron:
    """A validated expression; CronError says what is wrong."""
    fields = tuple(text.strip().lower().split())
    if len(fields) != 5:
        raise CronError(f"{text!r}: a schedule has five fields (minute hour day month weekday)")
    values = []
    for index, field in enumerate(fields):
        _, low, high = FIELDS[index]
        allowed: set[int] = set()
        for item in field.split(","):
            m = _ITEM.match(item)
            if not m:
                raise CronError(f"{text!r}: cannot read {item!r} in the {FIELDS[index][0]} field")
            span, step = m.group(1), int(m.group(2) or 1)
            if step < 1:
                raise CronError(f"{text!r}: a step must be at least 1")
            if span == "*":
                start, end = low, high
            elif "-" in span:
                a, b = span.split("-")
                start, end = _value(a, index, text), _value(b, index, text)
                if end < start:
                    raise CronError(f"{text!r}: range {span} runs backwards")
            else:
                start = _value(span, index, text)
                end = start if m.group(2) is None else high
            allowed.update(range(start, end + 1, step))
        values.append(frozenset(allowed))
    if fields[2] != "*" and fields[4] != "*":
        raise CronError(
            f"{text!r}: restrict the day of month or the day of week, not both "
            f"(cron fires on either, APScheduler only on both)"
        )
    return Cron(text.strip(), fields, tuple(values))


def _sd(field: str, values: frozenset, low: int, high: int) -> str:
    if field == "*":
        return "*"
    m = re.fullmatch(r"\*/(\d+)", field)
    if m:
        return f"{low:02d}/{m.group(1)}" if low else f"0/{m.group(1)}"
    return ",".join(f"{v:02d}" for v in sorted(values))


def _sd_days(item: str) -> str:
    if "/" in item:
        raise CronError(f"{item!r}: a step in the day of week has no systemd form")
    return "..".join(d.capitalize() for d in item.split("-"))
