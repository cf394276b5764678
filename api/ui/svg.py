"""Geometry of the server-rendered SVG: version timelines (a unit's versions, a SHAK code's
units) and the chart of recent sync runs. Only numbers and labels here; the templates draw."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

WIDTH = 800.0


@dataclass(frozen=True, slots=True)
class Span:
    start: date | None  # None: since always (drawn from the left edge)
    end: date | None  # exclusive; None: open (drawn to the right edge)
    href: str
    label: str  # the accessible name and tooltip
    text: str  # short text drawn in the bar when it fits
    current: bool = False


@dataclass(frozen=True, slots=True)
class Lane:
    label: str
    href: str | None
    spans: list[Span]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    href: str
    label: str
    text: str | None
    current: bool
    open_end: bool
    index: int


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class LaneLabel:
    y: float
    label: str
    href: str | None


@dataclass
class Timeline:
    width: float
    height: float
    left: float
    axis_y: float
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    lanes: list[LaneLabel] = field(default_factory=list)
    marker_x: float | None = None
    marker_label: str = ""


LANE_H = 30.0
BAR_H = 20.0
TOP = 8.0


def timeline(lanes: list[Lane], marker: date, *, label_width: float = 0.0) -> Timeline:
    """Lanes of spans on one time axis from the earliest start to a little after the latest
    end (or the marker date, whichever is later); `marker` is drawn as a vertical line."""
    bounds = [d for lane in lanes for s in lane.spans for d in (s.start, s.end) if d is not None]
    bounds.append(marker)
    first, last = min(bounds), max(bounds)
    span_days = max((last - first).days, 365)
    pad = max(span_days // 12, 60)
    t0, t1 = first - timedelta(days=pad), last + timedelta(days=pad)
    left = label_width + 8.0
    right = WIDTH - 12.0

    def x(day: date | None, default: float) -> float:
        if day is None:
            return default
        return left + (right - left) * (day - t0).days / (t1 - t0).days

    # Below the axis: the year labels, then the marker's date.
    height = TOP + LANE_H * max(len(lanes), 1) + 40.0
    out = Timeline(width=WIDTH, height=height, left=left, axis_y=height - 38.0)
    index = 0
    for n, lane in enumerate(lanes):
        y = TOP + n * LANE_H
        out.lanes.append(LaneLabel(y=y + BAR_H / 2 + 4, label=lane.label, href=lane.href))
        for s in lane.spans:
            x0, x1 = x(s.start, left), x(s.end, right)
            width = max(x1 - x0, 3.0)
            text = s.text if width > 8 * len(s.text) + 8 else None
            out.bars.append(
                Bar(x0, y, width, BAR_H, s.href, s.label, text, s.current, s.end is None, index)
            )
            index += 1
    out.ticks = _year_ticks(t0, t1, lambda d: x(d, left))
    out.marker_x = x(marker, left)
    out.marker_label = marker.isoformat()
    return out


def _year_ticks(t0: date, t1: date, x: Callable[[date], float]) -> list[Tick]:
    years = t1.year - t0.year
    step = next(s for s in (1, 2, 5, 10, 20, 50) if years / s <= 9)
    ticks = []
    for year in range(t0.year + 1, t1.year + 1):
        if year % step == 0:
            ticks.append(Tick(x(date(year, 1, 1)), str(year)))
    return ticks


@dataclass(frozen=True, slots=True)
class RunBar:
    x: float
    width: float
    y_duration: float
    h_duration: float
    y_records: float
    h_records: float
    css: str
    label: str
    tick: str


@dataclass
class RunChart:
    width: float
    height: float
    panel_h: float
    top_duration: float
    top_records: float
    left: float
    max_seconds: str
    max_records: str
    bars: list[RunBar] = field(default_factory=list)


def run_chart(
    runs: list[tuple[float | None, int, str, str, str]],
) -> RunChart:
    """Bars for (seconds, records, css class, label, tick text) of each run, oldest first:
    duration in the upper panel, records in the lower one, both from zero."""
    left, right = 64.0, WIDTH - 12.0
    panel = 90.0
    chart = RunChart(
        width=WIDTH,
        height=2 * panel + 70.0,
        panel_h=panel,
        top_duration=14.0,
        top_records=panel + 44.0,
        left=left,
        max_seconds="0",
        max_records="0",
    )
    if not runs:
        return chart
    max_s = max((s or 0.0 for s, *_ in runs), default=0.0) or 1.0
    max_r = max((r for _, r, *_ in runs), default=0) or 1
    chart.max_seconds = f"{max_s:.2f}" if max_s < 10 else f"{max_s:.0f}"
    chart.max_records = f"{max_r:,}".replace(",", " ")
    slot = (right - left) / max(len(runs), 12)
    for i, (seconds, records, css, label, tick) in enumerate(runs):
        h_d = panel * (seconds or 0.0) / max_s
        h_r = panel * records / max_r
        chart.bars.append(
            RunBar(
                x=left + i * slot + slot * 0.15,
                width=slot * 0.7,
                y_duration=chart.top_duration + panel - max(h_d, 1.0),
                h_duration=max(h_d, 1.0),
                y_records=chart.top_records + panel - max(h_r, 1.0),
                h_records=max(h_r, 1.0),
                css=css,
                label=label,
                tick=tick,
            )
        )
    return chart
