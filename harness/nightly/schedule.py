"""The nightly's work queue, as data: how long each model takes, how many slices it is cut into, and which
worker (GPU) runs which unit in which order. Pure Python, no paddle: `harness plan` prints it, `harness run`
follows it, the tests drive it with durations in and assignments out.

Units are (model, slice). A model's estimate comes from its last recorded run in the history (its eval
seconds per image, its per-worker start-up, its timing), else from its README's documented fps, else a
default that says it is one. Slicing: a model cut into k slices costs k start-ups but its eval is shared by
k workers; the planner tries unit sizes from "one unit per model" down to a fraction of the fair share
(Σ work / G) and keeps the plan with the shortest makespan. Scheduling is LPT (longest processing time
first onto the least loaded worker), a 4/3-approximation of the optimum, which is what the run's queue does
online: the next-longest unit goes to whichever worker frees up first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from harness.model.timing import Method
from harness.records.results import HistoryEntry
from harness.zoo.manifest import Model, Zoo

# Defaults where neither the history nor the README says anything (stated as such in every plan):
STARTUP_S = 30.0  # one worker: import paddle + ppdet, build, load and check the weights (GPU machine)
TIMING_S = 60.0  # the fps measurement of the default method (5 warm-up + 50 images, ≥ 10 s) and its export
CPU_SECONDS_PER_IMAGE = 10.8  # Faster R-CNN at 800 px on 2 cores (docs/stacks.md): a CPU estimate without history
DEFAULT_FPS = 10.0  # a model with no history and no documented speed
NOMINAL_IMAGES = 5000  # COCO val2017: the images a model is planned for before the dataset is opened
EVAL_SLOWDOWN = 1.0  # documented (model-only) fps → eval images/s: kept 1, said in the plan's notes


@dataclass(frozen=True)
class Estimate:
    """One model's work for one worker: start-up, eval of `images` images, the fps measurement."""

    model: str
    startup_s: float
    eval_s: float
    timing_s: float
    images: int
    source: str  # "history <run_id>" | "documented fps <value>" | "default"

    def seconds(self, k: int = 1, index: int = 0) -> float:
        """Slice `index` of `k`: its start-up, its share of the eval, and the timing if it is slice 0."""
        share = len(range(index, self.images, k)) / self.images if self.images else 1 / k
        return self.startup_s + self.eval_s * share + (self.timing_s if index == 0 else 0.0)


@dataclass(frozen=True)
class Unit:
    model: str
    index: int  # 0-based slice
    slices: int
    seconds: float

    @property
    def label(self) -> str:
        return f"{self.model} [{self.index + 1}/{self.slices}]" if self.slices > 1 else self.model


@dataclass
class Plan:
    workers: int
    units: list[Unit]  # in dispatch order (longest first)
    assignment: list[list[Unit]] = field(default_factory=list)  # per worker, in the order it runs them
    slices: dict[str, int] = field(default_factory=dict)

    @property
    def loads(self) -> list[float]:
        return [sum(u.seconds for u in w) for w in self.assignment]

    @property
    def makespan(self) -> float:
        return max(self.loads, default=0.0)

    @property
    def lower_bound(self) -> float:
        """No schedule of these units on these workers can finish sooner."""
        return max(sum(u.seconds for u in self.units) / self.workers, max((u.seconds for u in self.units), default=0.0))

    def as_json(self) -> dict:
        return {
            "workers": self.workers,
            "makespan_s": round(self.makespan, 1),
            "lower_bound_s": round(self.lower_bound, 1),
            "units": len(self.units),
            "slices": self.slices,
            "assignment": [[u.label for u in w] for w in self.assignment],
            "loads_s": [round(x, 1) for x in self.loads],
        }


def lpt(units: list[Unit], workers: int) -> Plan:
    """Longest first, each onto the worker that is free first (ties: the lowest worker id, then zoo order)."""
    if workers < 1:
        raise ValueError("at least one worker")
    order = sorted(units, key=lambda u: -u.seconds)  # stable: equal units keep their given order
    plan = Plan(workers, order, [[] for _ in range(workers)])
    loads = [0.0] * workers
    for u in order:
        w = min(range(workers), key=lambda i: (loads[i], i))
        plan.assignment[w].append(u)
        loads[w] += u.seconds
    return plan


def cut(estimates: list[Estimate], slices: dict[str, int]) -> list[Unit]:
    return [
        Unit(e.model, i, slices[e.model], e.seconds(slices[e.model], i))
        for e in estimates
        for i in range(slices[e.model])
    ]


def plan(estimates: list[Estimate], workers: int, *, parallel: int | str = "auto") -> Plan:
    """The schedule for these models on `workers` workers: every model cut into `parallel` slices, or with
    "auto" the slicing (unit size) that gives the shortest makespan."""
    if parallel != "auto":
        k = int(parallel)
        return _planned(estimates, workers, {e.model: max(1, min(k, e.images or 1)) for e in estimates})
    work = sum(e.seconds() for e in estimates)
    best = _planned(estimates, workers, {e.model: 1 for e in estimates})
    for j in (1, 1.5, 2, 3, 4, 6, 8, 12, 16):
        target = work / (workers * j)
        slices = {}
        for e in estimates:
            k = math.ceil(e.eval_s / max(target - e.startup_s, 1e-9)) if target > e.startup_s else workers
            slices[e.model] = max(1, min(k, workers, e.images or 1))
        candidate = _planned(estimates, workers, slices)
        if (candidate.makespan, len(candidate.units)) < (best.makespan, len(best.units)):
            best = candidate
    return best


def _planned(estimates: list[Estimate], workers: int, slices: dict[str, int]) -> Plan:
    p = lpt(cut(estimates, slices), workers)
    p.slices = slices
    return p


# ---- estimates: history, else the README's fps, else a default -------------------------------------------


def documented_fps(zoo: Zoo, model: Model) -> float | None:
    """The first speed the README documents for the model (its table's `fps` columns), as a number."""
    table = zoo.table_of(model)
    for col in table.fps if table else []:
        m = re.search(r"\d+(?:\.\d+)?", str(model.labels.get(col, "")))
        if m and float(m.group()) > 0:
            return float(m.group())
    return None


def from_history(
    entries: list[HistoryEntry], model: str, *, device: str | None = None, eval_size: int | None = None
) -> HistoryEntry | None:
    """The last history entry of the model that recorded its worker's seconds on this kind of device at this
    eval size (a CPU smoke run at 320 px says nothing about a GPU nightly at full size)."""
    for e in reversed(entries):
        cond = e.conditions
        same = (device is None or cond.device == device) and (cond.eval_size is None) == (eval_size is None)
        if e.model == model and same and e.seconds is not None and e.seconds.images:
            return e
    return None


def estimate(
    zoo: Zoo,
    model: Model,
    images: int,
    history: list[HistoryEntry],
    *,
    device: str | None = None,
    eval_size: int | None = None,
) -> Estimate:
    """The model's work on `images` images: its history under the same conditions, else its README's fps,
    else the defaults above."""
    if (e := from_history(history, model.name, device=device, eval_size=eval_size)) is not None and e.seconds:
        s = e.seconds
        per_image = s.eval / s.images
        return Estimate(model.name, s.startup, per_image * images, s.timing or 0.0, images, f"history {e.run_id}")
    if (fps := documented_fps(zoo, model)) is not None:
        return Estimate(
            model.name, STARTUP_S, images / fps * EVAL_SLOWDOWN, _timing_s(fps), images, f"documented fps {fps:g}"
        )
    return Estimate(model.name, STARTUP_S, images / DEFAULT_FPS, TIMING_S, images, "default")


def _timing_s(fps: float) -> float:
    """The default fps measurement at this speed: warm-up + at least min_iters images and min_seconds."""
    m = Method()
    return max(m.min_seconds, (m.warmup + m.min_iters) / fps)


def markdown(
    zoo_name: str, estimates: list[Estimate], plans: dict[int, Plan], baseline: dict[int, Plan], *, device: str = "gpu"
) -> str:
    """The plans for several GPU counts as a table, against one-model-per-unit (today's `--gpus`), with
    where the estimates came from. On a CPU (`device`) the work is CPU-hours and the slots are workers."""
    kind, slots = ("CPU", "workers") if device == "cpu" else ("GPU", "GPUs")
    sources: dict[str, int] = {}
    for e in estimates:
        key = e.source.split(" ")[0] if not e.source.startswith("documented") else "documented fps"
        sources[key] = sources.get(key, 0) + 1
    work = sum(e.seconds() for e in estimates)
    lines = [
        f"### {zoo_name}: {len(estimates)} models, {work / 3600:.2f} {kind}-hours of work unsliced",
        "",
        "estimates: " + ", ".join(f"{n} from {k}" for k, n in sorted(sources.items())),
        "",
        f"| {slots} | units | makespan | lower bound | makespan / bound | one model per {slots[:-1]} | its / bound |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g, p in plans.items():
        b = baseline[g]
        lines.append(
            f"| {g} | {len(p.units)} | {_hms(p.makespan)} | {_hms(p.lower_bound)} | "
            f"{p.makespan / p.lower_bound:.3f} | {_hms(b.makespan)} | {b.makespan / p.lower_bound:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _hms(seconds: float) -> str:
    h, rem = divmod(round(seconds), 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def cpu_estimate(model: Model, num_images: int, history: list[HistoryEntry], *, eval_size: int | None = None) -> str:
    """How long the model's eval takes on this CPU: from its own last CPU run at this eval size in the history,
    else the one CPU measurement the harness has (Faster R-CNN), said to be that."""
    e = from_history(history, model.name, device="cpu", eval_size=eval_size)
    if e is not None and e.seconds is not None:
        per_image = e.seconds.eval / e.seconds.images
        basis = f"{per_image:.1f} s/image in its CPU run {e.run_id}"
    else:
        per_image = CPU_SECONDS_PER_IMAGE
        basis = (
            f"no CPU run of {model.name} in the history; {per_image} s/image was measured for Faster R-CNN at "
            "800 px on 2 cores, and Mask R-CNN is slower"
        )
    hours = num_images * per_image / 3600
    return (
        f"no GPU: {num_images} images on the CPU take about {hours:.1f} h ({basis}). "
        "Use --subset N for a sample, or a GPU machine for the full val2017."
    )
