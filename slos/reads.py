"""The SLIs, error budgets and burn rates, read from the per-minute and per-day counters.

Windows count whole minutes, the current one included: "the last hour" is the 60 minute
buckets whose start is within the hour before now. The 28-day window is its minute buckets
before the first midnight (UTC) inside it, then day buckets (today's included).

- `sli` = good / total over 28 days (null with no events);
- `budget_remaining` = 1 - (bad / total) / (1 - target) over 28 days: 1 when nothing of the
  budget is spent, 0 when all of it is, below 0 when overspent (1 with no events);
- `burn_rate_<w>` = (bad / total over w) / (1 - target): 1 spends the budget in exactly 28
  days, 14.4 spends 2 % of it in an hour (null with no events in w).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum
from django.utils import timezone

from slos.models import DAY_S, DEFAULT_TARGETS, MINUTE_S, Slo, SloCount, SloTarget

SLO_WINDOW = timedelta(days=28)
BURN_WINDOWS = {
    "5m": timedelta(minutes=5),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
}


@dataclass(frozen=True)
class SloStatus:
    slo: str
    name: str
    target: float
    good: int
    total: int
    burn_rates: dict[str, float | None]
    window_totals: dict[str, int] = field(default_factory=dict)  # events in each burn window

    @property
    def budget(self) -> float:
        return 1 - self.target

    @property
    def sli(self) -> float | None:
        return self.good / self.total if self.total else None

    @property
    def budget_remaining(self) -> float:
        if not self.total:
            return 1.0
        return 1 - ((self.total - self.good) / self.total) / self.budget

    def as_api(self) -> dict:
        return {
            "slo": self.slo,
            "target": self.target,
            "sli": self.sli,
            "budget_remaining": self.budget_remaining,
            "burn_rate_1h": self.burn_rates["1h"],
            "burn_rate_6h": self.burn_rates["6h"],
        }


def slo_targets() -> dict[str, Decimal]:
    targets = {str(slo): target for slo, target in DEFAULT_TARGETS.items()}
    targets.update(SloTarget.objects.values_list("slo", "target"))
    return targets


def _minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _first_minute_after(moment: datetime) -> datetime:
    """The start of the first minute bucket that starts strictly after `moment`."""
    return _minute_floor(moment) + timedelta(minutes=1)


def _window_sums(window: timedelta, now: datetime) -> tuple[Q, Q]:
    """Filters selecting the buckets of the window ending now, as (minute rows, day rows)."""
    first = _first_minute_after(now - window)
    if window < timedelta(days=1):
        return Q(span_s=MINUTE_S, start__gte=first), Q(pk__in=[])
    first_midnight = first.replace(hour=0, minute=0)
    if first_midnight < first:
        first_midnight += timedelta(days=1)
    return (
        Q(span_s=MINUTE_S, start__gte=first, start__lt=first_midnight),
        Q(span_s=DAY_S, start__gte=first_midnight),
    )


def slos_status(now: datetime | None = None) -> list[SloStatus]:
    """Every SLO's status in one query, in the order of `Slo`."""
    now = now or timezone.now()
    sums = {}
    windows = {"28d": SLO_WINDOW, **BURN_WINDOWS}
    for name, window in windows.items():
        minutes, days = _window_sums(window, now)
        selected = minutes | days
        sums[f"good_{name}"] = Sum("good", filter=selected, default=0)
        sums[f"total_{name}"] = Sum("total", filter=selected, default=0)
    # The rows any window needs, as three ranges of the (span_s, start) index: the 28 days'
    # first minutes, its days, and the minutes of the longest burn window.
    minutes_28d, days_28d = _window_sums(SLO_WINDOW, now)
    burn_minutes, _ = _window_sums(max(BURN_WINDOWS.values()), now)
    wanted = minutes_28d | days_28d | burn_minutes
    rows = {
        row["slo"]: row
        for row in SloCount.objects.filter(wanted, start__lte=now).values("slo").annotate(**sums)
    }
    targets = slo_targets()
    statuses = []
    for slo in Slo:
        row = rows.get(slo.value, {})
        target = float(targets[slo.value])
        burn_rates, window_totals = {}, {}
        for name in BURN_WINDOWS:
            good, total = row.get(f"good_{name}", 0), row.get(f"total_{name}", 0)
            burn_rates[name] = ((total - good) / total) / (1 - target) if total else None
            window_totals[name] = total
        statuses.append(
            SloStatus(
                slo=slo.value,
                name=slo.label,
                target=target,
                good=row.get("good_28d", 0),
                total=row.get("total_28d", 0),
                burn_rates=burn_rates,
                window_totals=window_totals,
            )
        )
    return statuses


def slo_budget_by_day(slo: Slo | str, now: datetime | None = None) -> list[tuple[datetime, float]]:
    """Budget remaining at the end of each day of the 28-day window ending now (a chart):
    what was spent from the window's first day up to that day, against the whole budget."""
    now = now or timezone.now()
    target = float(slo_targets()[str(slo)])
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - timedelta(days=27)
    days = {
        start: (good, total)
        for start, good, total in SloCount.objects.filter(
            slo=str(slo), span_s=DAY_S, start__gte=first_day, start__lte=today
        ).values_list("start", "good", "total")
    }
    series = []
    good_so_far = total_so_far = 0
    for offset in range(28):
        day = first_day + timedelta(days=offset)
        good, total = days.get(day, (0, 0))
        good_so_far += good
        total_so_far += total
        spent = (total_so_far - good_so_far) / total_so_far / (1 - target) if total_so_far else 0
        series.append((day, 1 - spent))
    return series


def _state(status: SloStatus) -> str:
    """ok, watch or bad, as the tiles judge: bad when the budget is spent or burning at
    the fast-burn rate, watch when it burns faster than it can last or has under a quarter left."""
    burn_1h = status.burn_rates["1h"] or 0.0
    if status.budget_remaining <= 0 or burn_1h > 14.4:
        return "bad"
    if status.budget_remaining < 0.25 or burn_1h > 1:
        return "watch"
    return "ok"


# The 28-day chart: one bar a day, 4 units apart, in a 112 x 24 box; full height = all left.
DAY_BAR_STEP, DAY_BAR_WIDTH, CHART_HEIGHT = 4, 3, 24


def _percent_shown(value: float | None, *, places: int = 2) -> str:
    """99.95% (SLIs and targets need the hundredths: 99.9 and 99.95 differ by half a budget)."""
    return "—" if value is None else f"{value * 100:.{places}f}%"


def _day_bar(index: int, day: datetime, remaining: float) -> dict:
    height = round(max(0.0, min(1.0, remaining)) * CHART_HEIGHT, 2)
    return {
        "day": day,
        "remaining_shown": _percent_shown(remaining, places=0),
        "x": index * DAY_BAR_STEP,
        "y": CHART_HEIGHT - height,
        "width": DAY_BAR_WIDTH,
        "height": height,
    }


def slo_panel_rows(now: datetime | None = None) -> list[dict]:
    """What the SLO panel shows for each SLO: the figures, a state, and the budget by day."""
    now = now or timezone.now()
    rows = []
    for status in slos_status(now):
        days = slo_budget_by_day(status.slo, now)
        rows.append(
            {
                "slo": status.slo,
                "name": status.name,
                "target": status.target,
                "sli": status.sli,
                "good": status.good,
                "total": status.total,
                "budget_remaining": status.budget_remaining,
                # the bar: 0 to 100 % of its width (an overspent budget shows an empty bar)
                "budget_bar": max(0.0, min(1.0, status.budget_remaining)) * 100,
                "burn_rate_1h": status.burn_rates["1h"],
                "burn_rate_6h": status.burn_rates["6h"],
                "state": _state(status),
                "sli_shown": _percent_shown(status.sli),
                "target_shown": _percent_shown(status.target),
                "budget_shown": _percent_shown(status.budget_remaining, places=0),
                "days": [
                    _day_bar(index, day, remaining) for index, (day, remaining) in enumerate(days)
                ],
            }
        )
    return rows
