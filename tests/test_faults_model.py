"""The fault catalogue, part 2: what reaches the model. Corrupt checkpoints, configs that escape the source
tree, and signals, each caused for real against the rehearsal's mini-zoo."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import yaml
from conftest import CURRENT, FASTER, harness, harness_process, wait_until, workers_of

from harness.fetch.cache import entry_path

pytestmark = pytest.mark.stack

QUICK = ["--device", "cpu", "--eval-size", "320", "--no-timing"]


@pytest.mark.parametrize("damage", ["cut-at-100", "corrupt", "random-bytes"])
def test_a_corrupt_checkpoint_is_refused_and_leaves_the_cache(served, tmp_path, damage):
    """Truncated (at 100 bytes, at a third) or random bytes: the worker refuses to read it, the cache entry
    is invalidated and the zoo.lock record learned from those bytes is forgotten."""
    make, _, _ = served
    zoo = make(tmp_path, damage)
    url = yaml.safe_load(zoo.read_text())["models"][0]["weights"]["url"]
    cache = tmp_path / "cache"
    out = harness("verify", FASTER, "--zoo", str(zoo), "--out", str(tmp_path / "run"), "--json", *QUICK, cache=cache)
    assert out.returncode == 3, out.stderr[-2000:]
    rec = json.loads(out.stdout)
    assert rec["status"] == "error" and rec["error"]["stage"] == "weights" and rec["metrics"] == {}
    msg = rec["error"]["message"]
    assert f"{damage}.pdparams: not a readable paddle checkpoint" in msg
    assert f"re-fetch with `harness fetch {FASTER}`" in msg
    assert "the cache entry was removed and its zoo.lock record forgotten" in msg
    assert not entry_path(url, cache).exists()
    assert url not in json.loads(zoo.with_suffix(".lock").read_text())["artifacts"]


@pytest.mark.parametrize("base", ["../../../outside.yml", "/etc/hostname"])
def test_a_config_whose_base_leaves_the_tree_is_refused(served, tmp_path, ppdet_archive, base):
    make, cache, _ = served
    subprocess.run(["tar", "-xzf", ppdet_archive(CURRENT), "-C", tmp_path], check=True)
    tree = tmp_path / f"PaddleDetection-{CURRENT}"
    (tmp_path / "outside.yml").write_text("use_gpu: true\n")
    config = tree / "configs" / "res2net" / f"{FASTER}.yml"
    config.write_text(config.read_text().replace("_BASE_: [\n", f"_BASE_: [\n  '{base}',\n", 1))
    out = harness(
        "verify",
        FASTER,
        "--zoo",
        str(make(tmp_path)),
        "--ppdet-root",
        str(tree),
        "--out",
        str(tmp_path / "run"),
        "--json",
        *QUICK,
        cache=cache,
    )
    assert out.returncode == 3
    rec = json.loads(out.stdout)
    assert rec["error"]["stage"] == "fetch"
    assert f"_BASE_ {base!r} points outside the PaddleDetection tree" in rec["error"]["message"]
    assert not (tmp_path / "run" / FASTER / "worker.log").exists()  # refused before ppdet read anything


def _wait_for(path, proc, seconds=300):
    """The file exists (or the process ended without it)."""
    wait_until(lambda: path.exists() or proc.poll() is not None, seconds)
    return path.exists()


def _worker_started(run_dir, proc) -> bool:
    """A worker of this run is running (or the harness ended without one)."""
    wait_until(lambda: workers_of(run_dir) or proc.poll() is not None)
    return bool(workers_of(run_dir))


def test_sigint_during_verify_stops_the_worker_removes_partial_files_and_exits_130(served, tmp_path):
    make, cache, _ = served
    run_dir = tmp_path / "run"
    proc = harness_process(
        "verify",
        FASTER,
        "--zoo",
        str(make(tmp_path)),
        "--out",
        str(run_dir),
        *QUICK,
        cache=cache,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # as from a terminal,
    # even when pytest itself runs in the background (where shells start jobs with SIGINT ignored)
    assert _wait_for(run_dir / FASTER / "worker.log", proc) and _worker_started(run_dir, proc)
    proc.send_signal(signal.SIGINT)  # the worker is importing paddle or evaluating: any moment must do
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert wait_until(lambda: workers_of(run_dir) == [], 30)
    assert not (run_dir / FASTER).exists()  # no spec, log or half-written predictions left behind


def test_sigterm_stops_a_parallel_run_and_resume_finishes_it(served, tmp_path):
    """Two models at once (`--gpus 0,1`; on this CPU the ids only set CUDA_VISIBLE_DEVICES), SIGTERM while
    both run (a CI cancelling the job): exit 143, no worker left, nothing half-written; --resume finishes."""
    make, cache, _ = served
    run_dir, zoo = tmp_path / "run", make(tmp_path)
    names = [m["name"] for m in yaml.safe_load(zoo.read_text())["models"]]
    cmd = [
        "run",
        "--zoo",
        str(zoo),
        "--out",
        str(run_dir),
        "--gpus",
        "0,1",
        "--history",
        str(tmp_path / "h.jsonl"),
        "--subset",
        "1",
        *QUICK,
    ]
    proc = harness_process(*cmd, cache=cache, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(run_dir / names[0] / "worker.log", proc)
    assert _wait_for(run_dir / names[1] / "worker.log", proc)
    assert wait_until(lambda: len(workers_of(run_dir)) >= 2 or proc.poll() is not None)  # both workers running
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err
    assert wait_until(lambda: workers_of(run_dir) == [], 30)
    assert not any((run_dir / n / "result.json").exists() for n in names[:2])
    assert not (run_dir / names[0]).exists() and not (run_dir / names[1]).exists()
    spec = json.loads((run_dir / "run.json").read_text())
    assert spec["finished"] is None and spec["gpus"] == ["0", "1"]
    again = harness(*cmd, "--resume", cache=cache)
    assert again.returncode == 1, again.stderr[-2000:]
    assert all(json.loads((run_dir / n / "result.json").read_text())["status"] == "fail" for n in names)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])  # a crash; the kernel's OOM killer
def test_a_worker_killed_by_a_signal_is_that_models_error(served, tmp_path, sig):
    make, cache, _ = served
    run_dir = tmp_path / "run"
    proc = harness_process(
        "verify",
        FASTER,
        "--zoo",
        str(make(tmp_path)),
        "--out",
        str(run_dir),
        "--json",
        *QUICK,
        cache=cache,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _wait_for(run_dir / FASTER / "worker.log", proc) and _worker_started(run_dir, proc)
    for pid in workers_of(run_dir):
        os.kill(int(pid), sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3
    rec = json.loads(out)
    assert rec["error"]["stage"] == "worker"
    assert f"worker killed by signal {sig.name} without a result" in rec["error"]["message"]
    assert json.loads((run_dir / FASTER / "result.json").read_text())["status"] == "error"


def test_an_exception_inside_ppdets_eval_is_that_models_named_error_not_a_hang(served, tmp_path):
    """ppdet's transforms run in paddle's DataLoader thread: when one raises, the thread dies and the eval
    used to wait for ever for its batch. Now the exception is the worker's answer, named, at once."""
    make, cache, _ = served
    out = harness(
        "verify",
        FASTER,
        "--zoo",
        str(make(tmp_path)),
        "--out",
        str(tmp_path / "run"),
        "--json",
        *QUICK,
        "-o",
        "EvalReader.sample_transforms=[]",
        cache=cache,
    )
    assert out.returncode == 3, out.stderr[-2000:]
    err = json.loads(out.stdout)["error"]
    assert err["stage"] == "worker" and "PaddleDetection's eval raised KeyError: 'image'" in err["message"]
    assert "Traceback" in err["log_tail"]


# ---- the checkpoint reader, end to end: never an AP for bytes not faithfully loaded -----------------------


def _lock(zoo) -> dict:
    return json.loads(zoo.with_suffix(".lock").read_text())["artifacts"]


def _url(zoo, i: int = 0) -> str:
    return yaml.safe_load(zoo.read_text())["models"][i]["weights"]["url"]


def test_a_checkpoint_without_data_is_refused_before_eval(served, tmp_path):
    """Every key and shape of the model, no bytes: the old reader let numpy build 455 arrays of uninitialised
    memory and an AP was reported. Now it is a format error: exit 3, no predictions, the entry evicted."""
    make, _, keys = served
    zoo, cache = make(tmp_path, "nodata"), tmp_path / "cache"
    out = harness("verify", FASTER, "--zoo", str(zoo), "--out", str(tmp_path / "run"), "--json", *QUICK, cache=cache)
    assert out.returncode == 3, out.stderr[-2000:]
    rec = json.loads(out.stdout)
    assert rec["error"]["stage"] == "weights" and rec["metrics"] == {} and rec["stats"] == {}
    assert f"{keys[0]}: array without data" in rec["error"]["message"]
    assert "the cache entry was removed and its zoo.lock record forgotten" in rec["error"]["message"]
    assert not (tmp_path / "run" / FASTER / "predictions" / "bbox.json").exists()
    assert not entry_path(_url(zoo), cache).exists() and _url(zoo) not in _lock(zoo)


def test_non_finite_weights_are_a_weights_error_naming_the_tensor(served, tmp_path):
    make, _, keys = served
    zoo, cache = make(tmp_path, "nan"), tmp_path / "cache"
    out = harness("verify", FASTER, "--zoo", str(zoo), "--out", str(tmp_path / "run"), "--json", *QUICK, cache=cache)
    assert out.returncode == 3, out.stderr[-2000:]
    rec = json.loads(out.stdout)
    assert rec["error"]["stage"] == "weights" and rec["metrics"] == {}
    assert f"1 tensors hold NaN or infinite values: {keys[3]}" in rec["error"]["message"]
    assert not (tmp_path / "run" / FASTER / "predictions" / "bbox.json").exists()
    assert entry_path(_url(zoo), cache).exists() and _url(zoo) in _lock(zoo)  # readable bytes: nothing evicted


def _verify_and_meddle(zoo, tmp_path, meddle) -> dict:
    """Run verify; once its worker has started (after the fetch, before it reads the weights: paddle's import
    alone takes seconds), call `meddle()`. Returns the result record."""
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    proc = harness_process(
        "verify",
        FASTER,
        "--zoo",
        str(zoo),
        "--out",
        str(run_dir),
        "--json",
        *QUICK,
        cache=cache,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _wait_for(run_dir / FASTER / "worker.log", proc)
    meddle()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err[-2000:]
    return json.loads(out)


def test_a_checkpoint_that_vanishes_before_loading_is_a_local_fault_and_keeps_its_pin(served, tmp_path):
    make, _, _ = served
    zoo = make(tmp_path)
    entry = entry_path(_url(zoo), tmp_path / "cache")
    rec = _verify_and_meddle(zoo, tmp_path, entry.unlink)
    msg = rec["error"]["message"]
    assert rec["error"]["stage"] == "weights" and "could not read the checkpoint on this machine" in msg
    assert "FileNotFoundError" in msg and "removed" not in msg and "forgotten" not in msg
    assert _url(zoo) in _lock(zoo)  # a local fault never costs the pin (the next --locked run still works)


def test_a_checkpoint_replaced_after_its_verification_is_refused(served, tmp_path):
    """Other valid weights put in place of the verified cache entry while the worker starts: the worker hashes
    what it reads, sees other bytes than those verified, and refuses before eval."""
    make, _, _ = served
    zoo = make(tmp_path)
    entry = entry_path(_url(zoo), tmp_path / "cache")
    other = served_variant(zoo, "resaved")
    rec = _verify_and_meddle(zoo, tmp_path, lambda: os.replace(other, entry))
    msg = rec["error"]["message"]
    assert rec["error"]["stage"] == "weights" and "the file changed between its verification" in msg
    assert rec["artifacts"]["weights"]["sha256"] in msg and rec["metrics"] == {}
    assert not (tmp_path / "run" / FASTER / "predictions" / "bbox.json").exists()
    assert "the cache entry was removed (its pin is kept)" in msg and not entry.exists()
    assert _url(zoo) in _lock(zoo)  # the pin is right, the copy was not


def test_a_cache_entry_that_rotted_is_evicted_at_load_and_the_next_run_fetches_it_anew(served, tmp_path):
    """Bytes changed on disk with size and mtime kept: the fetch trusts the stamp, the worker hashes what it
    reads and refuses; the entry is evicted (not wedged: every rerun used to repeat the refusal), so the next
    run downloads, verifies and evaluates."""
    make, _, _ = served
    zoo, cache = make(tmp_path), tmp_path / "cache"
    args = ["verify", FASTER, "--zoo", str(zoo), "--json", *QUICK, "--subset", "1"]
    assert harness("fetch", FASTER, "--zoo", str(zoo), cache=cache).returncode == 0
    entry = entry_path(_url(zoo), cache)
    st = entry.stat()
    with entry.open("r+b") as f:
        f.seek(st.st_size - 100)  # inside the pickle's last opcodes: the rotted file does not even read
        f.write(b"\xff" * 8)
    os.utime(entry, ns=(st.st_atime_ns, st.st_mtime_ns))
    first = harness(*args, "--out", str(tmp_path / "run1"), cache=cache)
    rec = json.loads(first.stdout)
    assert first.returncode == 3 and rec["error"]["stage"] == "weights", first.stderr[-2000:]
    assert "the file changed between its verification" in rec["error"]["message"] and not entry.exists()
    assert "its pin is kept" in rec["error"]["message"] and _url(zoo) in _lock(zoo)  # not the published file's fault
    second = harness(*args, "--out", str(tmp_path / "run2"), cache=cache)
    rec = json.loads(second.stdout)
    assert second.returncode == 1 and rec["status"] == "fail" and rec["weight_check"]["ok"], second.stderr[-2000:]
    assert rec["weight_check"]["sha256"] == _lock(zoo)[_url(zoo)]["sha256"]


def served_variant(zoo, name: str):
    """A private copy of a served variant file (found through the mirror the zoo's URLs point at)."""
    import shutil
    import urllib.request

    url = _url(zoo).rsplit("/models/", 1)[0] + f"/variants/{name}.pdparams"
    dest = zoo.parent / f"{name}.copy"
    with urllib.request.urlopen(url) as resp, dest.open("wb") as f:
        shutil.copyfileobj(resp, f)
    return dest


def test_a_parallel_run_with_urls_differing_only_in_escaping_loads_each_models_own_bytes(served, tmp_path):
    """`a_b.pdparams` (the Faster weights) and `a%20b.pdparams` (the Mask weights) used to share one cache file:
    with --gpus 0,1 one model was evaluated with the other's weights while recording its own sha256."""
    import hashlib
    import urllib.request

    make, _, _ = served
    zoo = make(tmp_path, "a_b", "a%20b")
    names = [m["name"] for m in yaml.safe_load(zoo.read_text())["models"]][:2]
    out = harness(
        "run",
        *names,
        "--zoo",
        str(zoo),
        "--out",
        str(tmp_path / "run"),
        "--gpus",
        "0,1",
        "--history",
        str(tmp_path / "h.jsonl"),
        "--subset",
        "1",
        *QUICK,
        cache=tmp_path / "cache",
    )
    assert out.returncode == 1, out.stderr[-3000:]  # verdicts (random weights fail), no error
    for i, name in enumerate(names):
        with urllib.request.urlopen(_url(zoo, i)) as resp:
            served_sha = hashlib.sha256(resp.read()).hexdigest()
        rec = json.loads((tmp_path / "run" / name / "result.json").read_text())
        assert rec["status"] == "fail" and rec["weight_check"]["ok"], rec.get("error")
        assert rec["artifacts"]["weights"]["sha256"] == rec["weight_check"]["sha256"] == served_sha
