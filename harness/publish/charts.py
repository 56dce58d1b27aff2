"""Trend charts of the site laid out in plain numbers (pixels), which chart.html only draws as inline SVG.

Why here and not in a plotting library: the site fetches nothing and a test checks a chart without a browser.
A chart names its unit on the y axis and "night" on the x axis; each of the last DOTS nights has a dot and a tick
(every night is on the line), and a label as often as labels fit (the last night always); an fps dot is red on
the nights of a sustained slowdown (records/speed.py, as the view marks them), not by the AP verdict; a chart of
counts or hours starts at 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.records.results import HistoryEntry, Result

# Chart geometry (pixels): plot area inside the margins.
WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 58, 32, 24, 48
LABEL_PX = 72  # the width an x label needs ("night-029", "20261123-0100")
# A chart draws every night as its line, but a dot (with its tooltip and link) and a tick only for the last DOTS
# nights: a year of nights stays a few kB a chart, and the site's size does not grow with the history.
DOTS = 60


@dataclass(frozen=True)
class Point:
    """One night on a trend chart, in pixels, with what its tooltip says and the page it links to. `status`:
    the night's verdict (an AP), or the night's own change (fps: "steady", "slower", "faster")."""

    x: float
    y: float
    run_id: str
    value: float
    status: str
    href: str | None


@dataclass(frozen=True)
class Chart:
    """A trend chart laid out: the SVG template only draws these numbers."""

    title: str
    width: int
    height: int
    points: list[Point]  # the dots: the last DOTS nights
    path: str  # the polyline through every night
    documented: float | None = None
    doc_y: float | None = None  # the documented value's line
    band: tuple[float, float] | None = None  # (top, height) of documented ± tolerance
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[float] = field(default_factory=list)  # one per night
    unit: str = ""
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM  # the x axis's y


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About `n` round values between lo and hi (1, 2 or 5 times a power of ten apart)."""
    span = hi - lo or abs(hi) or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def finite(value: object) -> bool:
    """A number a chart can place: JSON lets NaN and Infinity through, a chart must not."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def chart(
    title: str,
    series: Sequence[tuple[str, float, str, str | None]],
    *,
    documented: float | None = None,
    tolerance: float | None = None,
    unit: str = "",
    zero: bool = False,
) -> Chart:
    """Lay out one trend: `series` is (run id, value, status, link) per night, oldest first (finite values);
    `zero`: the y axis starts at 0 (counts, hours: a negative tick would be nonsense)."""
    documented = documented if finite(documented) else None
    tolerance = tolerance if finite(tolerance) else None
    values = [v for _, v, _, _ in series]
    bounds = values + ([documented - (tolerance or 0), documented + (tolerance or 0)] if documented is not None else [])
    lo, hi = (min(bounds), max(bounds)) if bounds else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.5)
    lo, hi = (0.0 if zero else lo - pad), hi + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(v: float) -> float:
        return round(TOP + (hi - v) / (hi - lo) * plot_h, 2)

    def x_of(i: int) -> float:
        return round(LEFT + (plot_w / 2 if len(series) == 1 else i * plot_w / (len(series) - 1)), 2)

    points = [Point(x_of(i), y_of(v), run, v, status, href) for i, (run, v, status, href) in enumerate(series)]
    band = None
    if documented is not None and tolerance:
        band = (y_of(documented + tolerance), round(y_of(documented - tolerance) - y_of(documented + tolerance), 2))
    every = max(1, math.ceil(len(points) * LABEL_PX / plot_w))  # label every n-th night, as many as fit
    labelled = [p for i, p in enumerate(points) if (len(points) - 1 - i) % every == 0]  # the last night always
    return Chart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        points=points[-DOTS:],
        path=" ".join(f"{p.x},{p.y}" for p in points),
        documented=documented,
        doc_y=y_of(documented) if documented is not None else None,
        band=band,
        ticks=[(y_of(t), f"{t:g}") for t in _nice_ticks(lo, hi)],
        x_labels=[(p.x, p.run_id) for p in labelled],
        x_ticks=[p.x for p in points[-DOTS:]],
        unit=unit,
    )


def trends(
    rec: Result, nights: list[HistoryEntry], link: Callable[[str], str | None], fps_marks: dict[str, str]
) -> list[Chart]:
    """One chart per documented metric (documented value and tolerance band drawn) and one for fps, whose dots are
    marked as the view's `fps_marks` say ("slower" on the nights of a sustained slowdown)."""
    out = []
    for name, doc in rec.documented.items():
        series: list[tuple[str, float, str, str | None]] = [
            (e.run_id, float(value), e.status, link(e.run_id))
            for e in nights
            if (value := e.measured(name)) is not None and finite(value)
        ]
        m = rec.verdict(name)
        out.append(chart(name, series, documented=doc, tolerance=m.tolerance if m else None, unit="AP (%)"))
    timed = [e for e in nights if e.fps is not None and finite(e.fps)]
    if timed:
        out.append(
            chart(
                "fps",
                [(e.run_id, float(e.fps or 0.0), fps_marks.get(e.run_id, "steady"), link(e.run_id)) for e in timed],
                unit="images / s",
            )
        )
    return out


def hours_label(kind: str) -> str:
    """`gpu` -> `GPU-hours`, `cpu` -> `CPU-hours`: what a night's models took on that kind of device."""
    return f"{kind.upper() if kind in ('gpu', 'cpu') else kind}-hours"


def night_trends(nights: Sequence, link: Callable[[str], str | None]) -> list[Chart]:
    """The nights index's trends (changes.NightRow): models passing per night, and the device-hours per night of
    the device kind the nights used most (GPU-hours on a GPU nightly, CPU-hours on a CPU one); both from 0."""
    passing = [(n.run_id, float(n.counts.get("pass", 0)), "pass", link(n.run_id)) for n in nights]
    kinds: dict[str, float] = {}
    for n in nights:
        for k, h in n.hours.items():
            kinds[k] = kinds.get(k, 0.0) + h
    kind = max(kinds, key=lambda k: (k == "gpu", kinds[k]), default="gpu")
    hours = [(n.run_id, float(n.hours.get(kind, 0.0)), "steady", link(n.run_id)) for n in nights]
    label = hours_label(kind)
    return [chart("models passing", passing, unit="models", zero=True), chart(label, hours, unit="hours", zero=True)]
