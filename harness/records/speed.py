"""A model's speed over its nights: a sustained slowdown beyond the model's own night-to-night noise.

Why not "fps below 90 % of the last pass": one night's fps varies (thermal state, a busy host, the data
loader), so a one-night comparison alerts on noise — on 355 models it filed dozens of false issues a night.
A slowdown here is a *step*: the last `MIN_NIGHTS` nights or more in a row all lie below the model's level by
more than its noise allows, the level and the noise being the median and the robust spread (1.4826 × the
median absolute deviation) of the `BASELINE` nights before the step; the drop must also be at least `FLOOR` of
the level, however quiet the model. Only nights of the same device (by name), the same device kind and the same
timing backend are compared: another GPU or backend is another series, never a step. A step is *new* on the
night it is first confirmed (its `MIN_NIGHTS`-th night) and lasts as long as each later night stays below the
level before it. A faster model is never a step.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from harness.records.results import HistoryEntry

MIN_NIGHTS = 2  # a slowdown is sustained when this many nights in a row are slow
BASELINE = 10  # the nights before a step that give the model's level and noise
MIN_BASELINE = 8  # fewer nights than this before a step: nothing is judged (neither level nor noise is known)
# A drop smaller than 10 % of the level is never a step. Measured on scripts/bench_site.py's nights (355 models,
# 30 nights, 2-6 % normal noise, 6 seeds: 64k model-nights, half a year of a nightly): a 5 % floor, or a baseline
# of 5 nights, let one or two chance runs of two low nights through per seed; 10 % with 8 nights, none.
FLOOR = 0.10
NOISE_K = 4.0  # a slow night lies more than this many robust standard deviations below the level
MAD_SIGMA = 1.4826  # the median absolute deviation of normal noise, in standard deviations


@dataclass(frozen=True)
class Level:
    """A model's fps before a step: the median of its baseline nights, their robust spread, the drop that counts."""

    fps: float
    noise: float
    bound: float  # the least drop (fps) that is not noise: max(FLOOR × fps, NOISE_K × noise)
    last: str  # the run id of the last baseline night (the last night at the model's level)


@dataclass(frozen=True)
class SpeedStep:
    """A sustained slowdown of a model up to night `run_id`: since which night, for how many nights, the level
    before it and the median fps since, on which device and backend."""

    model: str
    run_id: str
    since: str
    nights: int
    level: Level
    after: float  # the median fps of the slow nights
    device_name: str | None
    backend: str | None

    @property
    def new(self) -> bool:
        """First confirmed tonight: the night a speed alert opens."""
        return self.nights == MIN_NIGHTS

    @property
    def change(self) -> float:
        """The relative change of the fps (negative: slower)."""
        return self.after / self.level.fps - 1 if self.level.fps else 0.0


def _finite(v: float | None) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def timed(nights: list[HistoryEntry]) -> list[HistoryEntry]:
    """The nights whose fps is comparable with the last night's: the same device name and timing backend, a
    finite fps (JSON lets NaN through). Empty when the last night was not timed."""
    if not nights or not _finite(nights[-1].fps):
        return []
    last = nights[-1]
    return [
        e
        for e in nights
        if _finite(e.fps)
        and e.conditions.backend == last.conditions.backend
        and e.conditions.device == last.conditions.device
        and e.env.device_name == last.env.device_name
    ]


def level(entries: list[HistoryEntry]) -> Level | None:
    """The level of these nights (a baseline), or None when they are too few to tell noise from a step."""
    if len(entries) < MIN_BASELINE:
        return None
    values = [float(e.fps or 0.0) for e in entries]
    mid = statistics.median(values)
    noise = MAD_SIGMA * statistics.median(abs(v - mid) for v in values)
    return Level(mid, noise, max(FLOOR * mid, NOISE_K * noise), entries[-1].run_id)


def _slow_tail(series: list[HistoryEntry]) -> tuple[int, Level | None]:
    """The longest run of slow nights ending with the last one, each against the level of the nights before the
    run, and that level."""
    best, found = 0, None
    for n in range(1, len(series)):
        lvl = level(series[max(0, len(series) - n - BASELINE) : len(series) - n])
        if lvl is None or not all(float(e.fps or 0.0) < lvl.fps - lvl.bound for e in series[-n:]):
            break
        best, found = n, lvl
    return best, found


def step_in(nights: list[HistoryEntry]) -> SpeedStep | None:
    """The slowdown of a model's last night (its nights: changes.series, tonight last), or None: the last night
    is at the model's level, faster, not timed, or not slow for `MIN_NIGHTS` nights yet."""
    series = timed(nights)
    n, lvl = _slow_tail(series)
    if n < MIN_NIGHTS or lvl is None:
        return None
    tail, last = series[-n:], series[-1]
    return SpeedStep(
        model=last.model,
        run_id=last.run_id,
        since=tail[0].run_id,
        nights=n,
        level=lvl,
        after=statistics.median(float(e.fps or 0.0) for e in tail),
        device_name=last.env.device_name,
        backend=last.conditions.backend,
    )


def marks(nights: list[HistoryEntry], step: SpeedStep | None) -> dict[str, str]:
    """Each timed night's mark for a chart: "slower" for the nights of tonight's step, else "steady"."""
    series = timed(nights)
    slow = {e.run_id for e in series[-step.nights :]} if step is not None else set()
    return {e.run_id: "slower" if e.run_id in slow else "steady" for e in series}
