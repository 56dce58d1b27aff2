"""What a reader must know to read a night's numbers: subsets, reduced sizes, devices and threads, modified
evaluations, carried-over models, errors and how the fps was measured, one line each.

Pure functions of result records: the report, the page and a model's page show the same notes (publish/view.py
computes them once a night)."""

from __future__ import annotations

from harness.records.results import Result


def _size(size: list[int]) -> str:
    """[320, 533] -> `320x533` (the eval Resize target, h×w)."""
    return "x".join(str(x) for x in size)


def status_text(rec: Result) -> str:
    """A record's status for people: a carried-over model says so, with the night it stands for."""
    if rec.carried is not None:
        return f"carried over from {rec.carried.run_id}"
    return rec.status


def carried_note(rec: Result) -> str | None:
    """`unchanged since NIGHT (inputs DIGEST)`: why a model did not run tonight, never a pass of tonight."""
    c = rec.carried
    return None if c is None else f"unchanged since {c.run_id} (inputs {c.digest[:12]}): carried over, not run tonight"


def notes(records: list[Result], *, every: bool = True) -> list[str]:
    """What a reader must know to read the numbers: subsets, reduced sizes, devices, errors, how fps was measured.
    `every`: each model's notes (the report); else the page's short list, without the notes a model's own pages
    say (how its fps was measured, that it was carried over: one line counts them) and without the zoo's notice
    (every page shows it first)."""
    out = sorted({rec.notice for rec in records if rec.notice}) if every else []  # a page shows them first
    carried = [r for r in records if r.carried is not None]
    if carried:
        out.append(
            f"{len(records) - len(carried)} models ran tonight, {len(carried)} carried over (their inputs are "
            "unchanged since their last pass: not passes of tonight)"
        )
    for rec in records:
        out += [f"{rec.model}: {n}" for n in _model_notes(rec, every=every)]
    timed = [r for r in records if timing_note(r) is not None]
    if not every and timed:
        out.append(
            f"Inf time (fps) of {len(timed)} models: batch 1, end to end (preprocess, model and postprocess); each "
            "model's record page says the backend, device, precision, size and images"
        )
    records = [r for r in records if r.carried is None]  # what the ones that ran were measured on
    envs = sorted(
        {
            f"{r.device or '?'} ({r.device_name or '?'}){_threads(r)}, paddle {r.paddle or '?'}, "
            f"PaddleDetection {(r.ppdet.commit if r.ppdet else None) or '?'}"
            for r in records
        }
    )
    return out + [f"measured on {e}" for e in envs]


def _model_notes(rec: Result, *, every: bool = True) -> list[str]:
    out = [note] if every and (note := carried_note(rec)) else []
    out += _geometry_notes(rec)
    if rec.ppdet is not None and rec.ppdet.dirty:
        shown = ", ".join(rec.ppdet.untracked[:3])
        extra = f" and untracked importable files ({shown})" if shown else ""
        out.append(f"PaddleDetection checkout with uncommitted changes{extra}: not the pinned source.")
    if rec.overrides:
        out.append(
            f"modified evaluation ({overrides_text(rec.overrides)}): not the config's own settings, "
            "the AP is not comparable with the documented one."
        )
    if rec.status == "error" and rec.error is not None:
        out.append(f"error in {rec.error.stage}: {rec.error.message.splitlines()[0] if rec.error.message else ''}")
    timing = rec.timing
    if timing is not None and timing.error:
        out.append(f"timing failed: {timing.error.splitlines()[0]}")
    elif every and (note := timing_note(rec)) is not None:
        out.append(note)
    return out


def timing_note(rec: Result) -> str | None:
    """How the model's fps was measured (the README's "Inf time (fps)" column), or None when it was not timed."""
    timing = rec.timing
    if timing is None or timing.error or not timing.backend:
        return None
    b = timing.backends.get(timing.backend)
    if b is None:  # a record that names its backend without that backend's figures
        return f"Inf time (fps) = {timing.backend} backend on {timing.device}, batch 1"
    size = timing.eval_size or rec.reduced_eval_size
    return (
        f"Inf time (fps) = {timing.backend} backend on {timing.device} "
        f"({timing.device_name}), batch 1, {b.config.get('precision', 'fp32')}, "
        f"{_size(size) if size else 'the config size'}, {b.iterations} timed images "
        f"(p50 {b.latency_ms['end_to_end'].p50:.0f} ms end to end; preprocess, model and "
        "postprocess included)"
    )


def _geometry_notes(rec: Result) -> list[str]:
    """The images and the size the model was evaluated on, when they are not the documented ones."""
    out = []
    ds, geo = rec.dataset, rec.geometry
    if ds is not None and ds.subset is not None:
        out.append(
            f"subset of {ds.subset.n} images (seed {ds.subset.seed}); AP on a "
            "subset is not comparable with the documented full-val2017 number."
        )
    if rec.reduced_eval_size:
        own = f" (the config's: {_size(geo.config)})" if geo is not None and geo.config else ""
        out.append(
            f"evaluated at {_size(rec.reduced_eval_size)}{own}: reduced for a smoke test, the AP is "
            "not comparable with the documented one."
        )
    elif geo is not None and geo.unscaled:
        out.append(f"--eval-size did not apply ({geo.unscaled}).")
    elif geo is not None and geo.changed_by == "input_size" and geo.eval and geo.config:
        out.append(f"evaluated at the documented input size {_size(geo.eval)} (the config's: {_size(geo.config)}).")
    return out


def _threads(rec: Result) -> str:
    """CPU threads of the eval: on a CPU they change the predictions (1 thread matches tools/eval.py)."""
    threads = rec.threads
    return f" with {threads} CPU thread{'s' if threads != 1 else ''}" if threads else ""


def overrides_text(overrides: dict, prefix: str = "") -> str:
    """`{"a": {"b": 1}}` -> `-o a.b=1`, as the user typed it."""
    parts = []
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            parts.append(overrides_text(value, f"{prefix}{key}."))
        else:
            parts.append(f"-o {prefix}{key}={value}")
    return " ".join(parts)
