"""`--changed-since`: the selection over synthetic PaddleDetection trees made with real git (the listings checked
against `git ls-tree`), synthetic impact maps and histories; and a carried-over model in the report, the CSV, JUnit,
the history and the site (never a pass of tonight)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from nights import NIGHTS, ZOO, record

from harness.fetch import treefiles
from harness.nightly import runner
from harness.nightly.selection import Decision, Tonight, counts, select
from harness.publish import outputs, site
from harness.records import history, impact, results
from harness.records.environment import NightEnv
from harness.records.results import Conditions, HistoryEntry

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

FILES = {
    "ppdet/__init__.py": "",
    "ppdet/core/workspace.py": "def register(c):\n    return c\n",
    "ppdet/modeling/heads/a_head.py": "class AHead:\n    def forward(self):\n        return 1\n",
    "ppdet/modeling/heads/b_head.py": "class BHead: pass\n",
    "ppdet/ops/gpu_only.py": "def nms_cuda(): pass\n",  # no CPU trace reaches it
    "configs/_base_/runtime.yml": "use_gpu: true\n",
    "configs/_base_/rcnn.yml": "architecture: FasterRCNN\n",
    "configs/a.yml": "_BASE_: ['_base_/runtime.yml', '_base_/rcnn.yml']\n",
    "configs/b.yml": "_BASE_: ['_base_/runtime.yml']\n",
    "configs/c.yml": "_BASE_: ['_base_/runtime.yml', '_base_/rcnn.yml']\n",
    "README.md": "# PaddleDetection\n",
}
# model -> (its config chain, the files it executes); IMPORTED: files a model only imports (none of their functions ran)
IMPORTED = {"b": ["ppdet/modeling/heads/a_head.py"]}
MODELS = {
    "a": (
        ["configs/a.yml", "configs/_base_/runtime.yml", "configs/_base_/rcnn.yml"],
        ["ppdet/modeling/heads/a_head.py"],
    ),
    "b": (["configs/b.yml", "configs/_base_/runtime.yml"], ["ppdet/modeling/heads/b_head.py"]),
    "c": (["configs/c.yml", "configs/_base_/runtime.yml", "configs/_base_/rcnn.yml"], []),
}
SHARED = ["ppdet/__init__.py", "ppdet/core/workspace.py"]
ENV = {"paddle": "3.3.1", "harness_commit": "1" * 40, "driver": "550.54", "zoo_sha256": "z" * 64}


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip()


def _commit(repo: Path, changes: dict[str, str | None]) -> str:
    """Apply `changes` (None: delete) to the work tree and commit; returns the tree id."""
    for path, text in changes.items():
        f = repo / path
        if text is None:
            f.unlink()
        else:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "step")
    return _git(repo, "rev-parse", "HEAD^{tree}")


@pytest.fixture
def repo(tmp_path) -> tuple[Path, str]:
    r = tmp_path / "PaddleDetection"
    r.mkdir()
    _git(r, "init", "-q")
    return r, _commit(r, dict(FILES))


def _ls_tree(repo: Path, tree: str) -> dict[str, str]:
    rows = (line.split(None, 3) for line in _git(repo, "ls-tree", "-r", tree).splitlines())
    return {path: sha for _mode, _kind, sha, path in rows}


def _map(repo: Path, tree: str, **status: str) -> impact.ImpactMap:
    blobs = _ls_tree(repo, tree)
    doc = {
        "version": 1,
        "stack": "current",
        "paddle": "3.3.1",
        "ppdet": {"commit": None, "tree": tree},
        "built": "2026-11-30T00:00:00+00:00",
        "seconds": 1.0,
        "models": {
            m: {
                "configs": {p: blobs[p] for p in chain},
                "files": {p: blobs[p] for p in [*SHARED, *files]},
                "imported": {p: blobs[p] for p in IMPORTED.get(m, [])},
                "status": status.get(m, "traced"),
            }
            for m, (chain, files) in MODELS.items()
        },
    }
    path = repo.parent / "map.json"
    path.write_text(json.dumps(doc))
    return impact.read(path)


def _entry(model: str, run: str, day: int, tree: str, status: str = "pass", **env: str) -> HistoryEntry:
    return HistoryEntry(
        run_id=run,
        finished=f"2026-11-{day:02d}T02:00:00+00:00",
        model=model,
        status=status,
        conditions=Conditions(stack="current", device="gpu"),
        metrics={},
        env=NightEnv(**{**ENV, "ppdet_tree": tree, **env}),
    )


def _tonight(repo: Path, **env: str) -> Tonight:
    return Tonight(NightEnv(**{**ENV, **env}), treefiles.of_directory(repo), stack="current", device="gpu")


def _selected(decisions: list[Decision]) -> dict[str, set[str]]:
    return {d.model: {r.kind for r in d.reasons} for d in decisions if d.run}


def _choose(repo: Path, tree0: str, changes: dict[str, str | None], **env: str) -> list[Decision]:
    the_map = _map(repo, tree0)
    past = [_entry(m, "n1", 1, tree0) for m in MODELS]
    _commit(repo, changes)
    content = treefiles.reader([repo], repo)
    return select(
        list(MODELS), the_map, past, _tonight(repo, **env), lambda t: treefiles.of_git(repo, t), content=content
    )


def test_listings_are_git_s_own_blob_ids_from_a_directory_and_from_the_objects(repo):
    r, tree0 = repo
    (r / "bin").mkdir()
    (r / "bin" / "run.sh").write_text("#!/bin/sh\n")
    (r / "bin" / "run.sh").chmod(0o755)
    (r / "bin" / "link").symlink_to("run.sh")
    tree1 = _commit(r, {})
    assert treefiles.of_git(r, tree1) == _ls_tree(r, tree1) == treefiles.of_directory(r)
    assert treefiles.of_git(r, _git(r, "rev-parse", "HEAD")) == _ls_tree(r, tree1)  # a commit id names its tree
    assert treefiles.of_git(r, "0" * 40) is None and treefiles.of_git(r, tree0) == _ls_tree(r, tree0)
    assert treefiles.changed(_ls_tree(r, tree0), _ls_tree(r, tree1)) == {"bin/link": "added", "bin/run.sh": "added"}


def test_a_file_one_model_executes_selects_that_model_only(repo):
    r, tree0 = repo
    decisions = _choose(r, tree0, {A_HEAD: FILES[A_HEAD].replace("return 1", "return 2")})
    assert _selected(decisions) == {"a": {"file"}}
    carried = [d for d in decisions if not d.run]
    assert {d.model for d in carried} == {"b", "c"} and all(
        d.since == "n1" and len(d.digest or "") == 64 for d in carried
    )
    assert "unchanged since n1" in carried[0].line() and counts(decisions) == {"run": 1, "carried": 2, "file": 1}


A_HEAD = "ppdet/modeling/heads/a_head.py"


@pytest.mark.parametrize(
    "change",
    [
        "X = 1\n" + FILES[A_HEAD],  # a module statement
        FILES[A_HEAD].replace("    def forward(self):", "    @staticmethod\n    def forward(self):"),  # a decorator
        FILES[A_HEAD].replace("forward(self)", "forward(self, k=2)"),  # a default, evaluated at import
        FILES[A_HEAD] + "def helper(:\n",  # no longer Python: nothing can be said
    ],
)
def test_module_level_code_of_an_imported_file_selects_the_models_importing_it(repo, change):
    r, tree0 = repo
    assert _selected(_choose(r, tree0, {A_HEAD: change})) == {"a": {"file"}, "b": {"imported"}}


def test_without_the_files_bytes_every_change_of_an_imported_file_counts(repo):
    r, tree0 = repo
    the_map, past = _map(r, tree0), [_entry(m, "n1", 1, tree0) for m in MODELS]
    _commit(r, {A_HEAD: FILES[A_HEAD].replace("return 1", "return 2")})
    got = select(list(MODELS), the_map, past, _tonight(r), lambda t: treefiles.of_git(r, t))
    assert _selected(got) == {"a": {"file"}, "b": {"imported"}}
    none = select(list(MODELS), the_map, past, _tonight(r), lambda t: treefiles.of_git(r, t), content=lambda p, b: None)
    assert _selected(none) == {"a": {"file"}, "b": {"imported"}}


def test_the_reader_gives_a_blob_s_bytes_from_a_tree_on_disk_or_git_and_nothing_outside(repo, tmp_path):
    r, tree0 = repo
    blob = _ls_tree(r, tree0)[A_HEAD]
    _commit(r, {A_HEAD: "changed\n"})
    read = treefiles.reader([r], r)
    assert read(A_HEAD, blob) == FILES[A_HEAD].encode()  # the old blob: from git's objects
    assert read(A_HEAD, _ls_tree(r, _git(r, "rev-parse", "HEAD^{tree}"))[A_HEAD]) == b"changed\n"
    assert treefiles.reader([r])(A_HEAD, blob) is None and read("../x", blob) is None and read(A_HEAD, "f" * 40) is None


def test_a_file_no_model_executes_under_ppdet_selects_all_and_one_outside_ppdet_none(repo):
    r, tree0 = repo
    assert _selected(_choose(r, tree0, {"README.md": "# changed\n", "docs/new.md": "x"})) == {}
    everything = _choose(r, tree0, {"ppdet/ops/gpu_only.py": "def nms_cuda(): return 1\n"})
    assert _selected(everything) == {m: {"untraced"} for m in MODELS}
    assert "ppdet/ops/gpu_only.py" in everything[0].reasons[0].detail


def test_a_new_or_removed_module_under_ppdet_selects_all(repo):
    r, tree0 = repo
    assert set(_selected(_choose(r, tree0, {"ppdet/modeling/necks/new_neck.py": "x = 1\n"}))) == set(MODELS)


def test_a_removed_file_of_a_model_selects_it(repo):
    r, tree0 = repo
    assert _selected(_choose(r, tree0, {"ppdet/modeling/heads/b_head.py": None})) == {"b": {"file"}}


def test_a_changed_base_file_selects_the_models_whose_chains_include_it(repo):
    r, tree0 = repo
    assert _selected(_choose(r, tree0, {"configs/_base_/rcnn.yml": "architecture: MaskRCNN\n"})) == {
        "a": {"config"},
        "c": {"config"},
    }
    assert set(_selected(_choose(r, tree0, {"configs/_base_/runtime.yml": "use_gpu: false\n"}))) == set(MODELS)


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"paddle": "paddlepaddle-gpu 3.3.2"}, "stack"),
        ({"harness_commit": "2" * 40}, "harness"),
        ({"driver": "560.1"}, "device"),
        ({"zoo_sha256": "y" * 64}, "zoo"),
    ],
)
def test_a_stack_harness_driver_or_zoo_change_selects_all(repo, env, kind):
    r, tree0 = repo
    assert _selected(_choose(r, tree0, {}, **env)) == {m: {kind} for m in MODELS}


def test_paddle_as_run_json_writes_it_is_the_same_version(repo):
    r, tree0 = repo
    assert _selected(_choose(r, tree0, {}, paddle="paddlepaddle-gpu 3.3.1")) == {}


def test_models_never_passed_without_map_entry_or_with_a_failed_trace_run(repo):
    r, tree0 = repo
    the_map = _map(r, tree0, b="error: ImportError: no module named x")
    past = [_entry("a", "n1", 1, tree0, status="fail"), _entry("b", "n1", 1, tree0), _entry("c", "n1", 1, tree0)]
    names = [*MODELS, "d"]
    got = select(names, the_map, [*past, _entry("d", "n1", 1, tree0)], _tonight(r), lambda t: _ls_tree(r, t))
    assert _selected(got) == {"a": {"never-passed"}, "b": {"trace-error"}, "d": {"no-map-entry"}}


def test_a_last_passing_tree_not_at_hand_selects_the_model(repo):
    r, tree0 = repo
    got = select(["a"], _map(r, tree0), [_entry("a", "n1", 1, "f" * 40)], _tonight(r), lambda t: treefiles.of_git(r, t))
    assert _selected(got) == {"a": {"tree-unknown"}}


def test_the_dataset_of_a_model_changed_selects_that_model(repo):
    r, tree0 = repo
    past = [_entry(m, "n1", 1, tree0, dataset_sha256="d" * 64) for m in MODELS]
    night = Tonight(_tonight(r).env, treefiles.of_directory(r), {"a": "e" * 64, "b": "d" * 64}, "current", "gpu")
    assert _selected(select(list(MODELS), _map(r, tree0), past, night, lambda t: _ls_tree(r, t))) == {"a": {"dataset"}}


def test_changed_since_a_night_or_a_tree(repo):
    r, tree0 = repo
    the_map = _map(r, tree0)
    tree1 = _commit(r, {"ppdet/modeling/heads/a_head.py": "class AHead:\n    y = 2\n"})
    past = [_entry(m, "n1", 1, tree0) for m in MODELS] + [_entry("a", "n2", 2, tree1)]
    tree2 = _commit(r, {"ppdet/modeling/heads/b_head.py": "class BHead:\n    y = 2\n"})
    assert tree2 != tree1
    night, files = _tonight(r), (lambda t: treefiles.of_git(r, t))
    assert _selected(select(list(MODELS), the_map, past, night, files)) == {"b": {"file"}}  # a passed on tree1
    assert _selected(select(list(MODELS), the_map, past, night, files, since="n1")) == {
        "a": {"file"},
        "b": {"file"},
    }
    assert _selected(select(list(MODELS), the_map, past, night, files, since=tree1)) == {"b": {"file"}}


def test_rotate_bounds_every_model_s_age_in_nights(repo):
    r, tree0 = repo
    the_map, night, k = _map(r, tree0), _tonight(r), 3
    past = [_entry(m, "n00", 1, tree0) for m in MODELS]
    last_ran = dict.fromkeys(MODELS, 0)
    for n in range(1, 12):  # nothing changes: only the rotation runs models
        got = select(list(MODELS), the_map, past, night, lambda t: _ls_tree(r, t), rotate=k)
        ran = [d.model for d in got if d.run]
        assert all(d.reasons[0].kind == "rotation" for d in got if d.run)
        for m in ran:
            assert n - last_ran[m] == k  # never older than K nights, and not run before it is due
            last_ran[m] = n
        # a night that ran something leaves history lines (the rest were carried, and are no line)
        past += [_entry(m, f"n{n:02d}", n + 1, tree0) for m in ran] or [_entry("x", f"n{n:02d}", n + 1, tree0)]
    assert set(last_ran.values()) != {0}
    without = select(list(MODELS), the_map, past, night, lambda t: _ls_tree(r, t))
    assert _selected(without) == {}


FASTER = next(iter(ZOO))


def _carried_night(root: Path) -> tuple[Path, Path, list[results.Result]]:
    """Three nights that ran, then a night where the first model was carried over from the third."""
    hist = root / "history.jsonl"
    for night in range(3):
        run = root / "runs" / NIGHTS[night]
        for m in ZOO:
            results.write(run, record(m, night))
        history.append(hist, results.read([run]))
    run = root / "runs" / NIGHTS[3]
    for m in ZOO:
        rec = record(m, 3)
        if m == FASTER:
            rec = {k: v for k, v in rec.items() if k not in ("metrics", "stats", "timing", "weight_check")}
            rec |= {"status": "carried", "carried": {"run_id": NIGHTS[2], "digest": "c" * 64, "measured": {}}}
        results.write(run, rec)
    return run, hist, results.read([run])


def test_a_carried_model_is_reported_as_carried_over_never_as_tonight_s_pass(tmp_path):
    run, hist, recs = _carried_night(tmp_path)
    text = outputs.publish(recs, history=hist, run_dirs=[run], outputs=run).text
    line = next(x for x in text.splitlines() if f"{FASTER}.pdparams" in x)  # its row (the seed's layout)
    assert line.split("|")[-2].strip() == f"carried over from {NIGHTS[2]}" and " pass " not in line
    assert f"unchanged since {NIGHTS[2]} (inputs cccccccccccc)" in text and "3 models ran tonight, 1 carried" in text
    rows = {r["model"]: r for r in csv.DictReader((run / "results.csv").open())}
    assert rows[FASTER]["status"] == "carried" and rows[FASTER]["carried_from"] == NIGHTS[2]
    assert rows[FASTER]["box_ap_measured"] == "" and rows[list(ZOO)[-1]]["carried_from"] == ""
    junit = (run / "junit.xml").read_text()
    assert "<skipped" in junit and junit.count("<skipped") == 1
    tonight = [e for e in history.load(hist) if e.run_id == NIGHTS[3]]
    assert {e.model for e in tonight} == set(ZOO) - {FASTER}  # the history keeps what ran


def test_the_site_shows_a_carried_model_as_carried_over_in_the_grid_and_on_its_page(tmp_path):
    run, hist, recs = _carried_night(tmp_path)
    out = tmp_path / "site"
    site.build(recs, out, history=history.load(hist), run_dirs=[run])
    index = (out / "index.html").read_text()
    assert 'class="cell carried"' in index and f"carried over from {NIGHTS[2]}" in index
    row = index[index.index(f'data-model="{FASTER}"') :]
    row = row[: row.index("</tr>")]
    assert row.count('class="cell pass"') == 3 and row.count('class="cell carried"') == 1  # its nights, then tonight
    assert 'id="count-carried">1 carried' in index and 'id="count-pass">1 pass' in index  # counted apart
    page = (out / site.page_of(NIGHTS[3], FASTER)).read_text()
    assert "carried over from <strong>" + NIGHTS[2] in page and "not a pass of tonight" in page
    rows = {r["model"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows[FASTER]["status"] == "carried"


def test_plan_changed_since_prints_the_selection_with_reasons(repo, tmp_path):
    """The command end to end on a synthetic checkout (`--ppdet-root`: its git objects hold the older tree)."""
    import hashlib

    from conftest import REPO, harness

    from harness.commands.options import load
    from harness.core.files import sha256_file
    from harness.model.timing import device_name
    from harness.nightly import synthetic

    r, tree0 = repo
    zoo, zoo_path, _ = load(REPO / "zoo.yaml")
    data = tmp_path / "coco"  # tonight's dataset (`--data`): the run prepares it before it selects
    synthetic.write(zoo.dataset, data, 2)
    names = [m.name for m in zoo.models]
    blobs = _ls_tree(r, tree0)
    heads = ["ppdet/modeling/heads/a_head.py", "ppdet/modeling/heads/b_head.py"]
    doc = {
        "version": 1,
        "stack": zoo.source()[0],
        "paddle": None,
        "ppdet": {"commit": None, "tree": tree0},
        "built": "2026-11-30T00:00:00+00:00",
        "seconds": 1.0,
        "models": {
            n: {"files": {h: blobs[h]}, "configs": {}, "status": "traced"}
            for n, h in zip(names[:2], heads, strict=True)
        },
    }
    (tmp_path / "map.json").write_text(json.dumps(doc))
    env = {
        "harness_commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or None,
        "zoo_sha256": hashlib.sha256(zoo_path.read_bytes()).hexdigest(),
        # tonight's as this environment reports it (paddle's version on a stack's env, None without paddle)
        "paddle": runner.environment().get("paddle"),
        "driver": runner.environment().get("driver"),
    }
    lines = [
        _entry(n, "n1", 1, tree0, **env).model_copy(
            update={"conditions": Conditions(stack=zoo.source()[0], device="gpu")}
        )
        for n in names
    ]
    on_cpu = {"device_name": device_name("cpu"), "dataset_sha256": sha256_file(data / zoo.dataset.annotation_file)}
    lines += [
        e.model_copy(
            update={
                "conditions": Conditions(stack=e.conditions.stack, device="cpu"),
                "env": e.env.model_copy(update=on_cpu),
            }
        )
        for e in lines
    ]
    (tmp_path / "h.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in lines))
    _commit(r, {heads[0]: "class AHead:\n    z = 3\n"})
    common = ["plan", "--zoo", str(zoo_path), "--history", str(tmp_path / "h.jsonl"), "--ppdet-root", str(r)]
    out = harness(*common, "--changed-since", "n1", "--impact-map", str(tmp_path / "map.json"), "--json")
    assert out.returncode == 0, out.stderr
    chosen = {d["model"]: d for d in json.loads(out.stdout)["selection"]}
    assert chosen[names[0]]["run"] and chosen[names[0]]["reasons"][0]["kind"] == "file"
    assert not chosen[names[1]]["run"] and chosen[names[1]]["since"] == "n1"
    assert all(chosen[n]["reasons"][0]["kind"] == "no-map-entry" for n in names[2:])
    text = harness(*common, "--changed-since", "n1", "--impact-map", str(tmp_path / "map.json")).stdout
    assert f"{names[1]}: unchanged since n1" in text and f"{names[0]}: run (file: {heads[0]})" in text
    bad = harness(*common, "--changed-since", "nope", "--impact-map", str(tmp_path / "map.json"))
    assert bad.returncode == 2 and "neither a night of the history nor a git tree id" in bad.stderr
    assert harness(*common, "--rotate", "3").returncode == 2
    nomap = harness(*common, "--changed-since", "n1", cwd=tmp_path)  # the default map: reports/impact/ under cwd
    assert nomap.returncode == 2 and "no impact map at reports/impact/" in nomap.stderr
    # tonight nothing but the first head changed: `run` without that model runs nothing and carries the second
    argv = ["run", names[1], "--zoo", str(zoo_path), "--history", str(tmp_path / "h.jsonl"), "--ppdet-root", str(r)]
    argv += ["--data", str(data), "--device", "cpu"]
    ran = harness(
        *argv, "--changed-since", "n1", "--impact-map", str(tmp_path / "map.json"), "--out", str(tmp_path / "run")
    )
    assert ran.returncode == 0, ran.stderr
    rec = results.read([tmp_path / "run"])[0]
    assert rec.status == "carried" and rec.carried is not None and rec.carried.run_id == "n1" and not rec.metrics
    assert f"{names[1]}: unchanged since n1" in ran.stdout and "carried over from n1" in ran.stdout
    assert len(history.load(tmp_path / "h.jsonl")) == 2 * len(names)  # nothing ran: the history gains no line
