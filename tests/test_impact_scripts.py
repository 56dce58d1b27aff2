"""The replay and soundness scripts' own logic (scripts/replay_impact.py, scripts/impact_soundness.py), on synthetic
git repositories made here: a night of the replay is `select`'s decision between two commits; the soundness
check writes a commit's files as git holds them (naming the blobs a partial mirror lacks) and judges two runs'
predictions byte for byte, a failure on one tree only being a change."""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path

import pytest
from test_selection import FILES, MODELS, _commit, _git, _ls_tree, _map

from harness.fetch import source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import impact_soundness as soundness
import replay_impact as replay

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def history(tmp_path) -> tuple[Path, list[str]]:
    """A repository with three commits after the first: a head one model executes, a README, a GPU-only op."""
    repo = tmp_path / "PaddleDetection"
    repo.mkdir()
    _git(repo, "init", "-q")
    _commit(repo, dict(FILES))
    _commit(repo, {"ppdet/modeling/heads/b_head.py": "class BHead:\n    x = 2\n"})
    _commit(repo, {"README.md": "# PaddleDetection 2\n"})
    _commit(repo, {"ppdet/ops/gpu_only.py": "def nms_cuda():\n    return 2\n"})
    return repo, _git(repo, "rev-list", "--first-parent", "HEAD").split()[::-1]


def test_a_replayed_night_selects_what_select_selects_between_the_two_commits(history):
    repo, commits = history
    git = replay.Git(repo)
    assert git.commits(commits[-1], 3) == commits
    the_map = _map(repo, git.tree(commits[0]))
    picked = [
        {d.model for d in replay.night(git, list(MODELS), the_map, a, b) if d.run}
        for a, b in itertools.pairwise(commits)
    ]
    assert picked == [{"b"}, set(), set(MODELS)]  # b's head; a README; a file no model executed


def test_export_writes_each_file_as_git_holds_it_and_names_the_blobs_the_mirror_lacks(history, tmp_path):
    repo, commits = history
    git = replay.Git(repo)
    listing = _ls_tree(repo, git.tree(commits[-1]))
    lost = listing["ppdet/core/workspace.py"]
    (repo / ".git" / "objects" / lost[:2] / lost[2:]).unlink()  # a partial mirror: listed, not held
    out = tmp_path / "tree"
    missing = soundness.export(git, commits[-1], out)
    assert missing == ["ppdet/core/workspace.py"]
    written = {p.relative_to(out).as_posix(): source.blob_id(p) for p in out.rglob("*") if p.is_file()}
    want = {p: b for p, b in listing.items() if p.startswith(soundness.PARTS) and p not in missing}
    assert written == want and "README.md" not in written


def _run(root: Path, model: str, preds: list | None = None, error: str | None = None) -> Path:
    d = root / model
    (d / "predictions").mkdir(parents=True)
    rec: dict = (
        {"status": "fail"} if error is None else {"status": "error", "error": {"stage": "eval", "message": error}}
    )
    (d / "result.json").write_text(json.dumps(rec))
    if preds is not None:
        (d / "predictions" / "bbox.json").write_text(json.dumps(preds))
    return root


def test_compare_calls_identical_only_byte_equal_predictions_and_a_one_sided_failure_a_change(tmp_path):
    box = [{"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}]
    moved = [{**box[0], "score": 0.50001}]
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, "same", box), _run(b, "same", box)
    _run(a, "moved", box), _run(b, "moved", moved)
    _run(a, "broke", box), _run(b, "broke", error="KeyError: x")
    _run(a, "both", error="no such op"), _run(b, "both", error="no such op")
    _run(a, "two", error="no such op"), _run(b, "two", error="another")
    _run(a, "none", []), _run(b, "none", [])
    got = {m: soundness.compare(a, b, m, "unaffected") for m in ("same", "moved", "broke", "both", "two", "none")}
    assert {m: o.result for m, o in got.items()} == {
        "same": "identical",
        "moved": "changed",
        "broke": "changed",
        "both": "failed on both",
        "two": "changed",
        "none": "empty on both",
    }
    assert got["same"].predictions == 1 and "bbox.json" in got["moved"].detail


def test_the_unaffected_sample_takes_models_that_import_a_changed_file_first(history):
    repo, commits = history
    git = replay.Git(repo)
    the_map = _map(repo, git.tree(commits[0]))
    decisions = replay.night(git, list(MODELS), the_map, commits[1], commits[2])  # README: nothing selected
    arch = {m: m for m in MODELS}
    picks = soundness.sample(decisions, the_map, arch, ["ppdet/modeling/heads/a_head.py"], 2, 1, "seed")
    assert picks[0] == ("b", "unaffected")  # b only imports a_head.py
    assert [c for _, c in picks] == ["unaffected", "unaffected"]  # nothing affected to sample


def test_pairs_are_the_newest_that_change_modeling_code_and_leave_some_model_unaffected(history):
    repo, commits = history
    git = replay.Git(repo)
    assert soundness.pick_pairs(git, commits, 5, lambda a, b: True) == [(commits[0], commits[1])]
    assert soundness.pick_pairs(git, commits, 5, lambda a, b: False) == []
