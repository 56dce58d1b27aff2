"""Pieces of the nightly that need no model: shards, the history, JUnit/CSV, model-index,
and the GitHub workflow validated against its schema."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, result

from harness.cli import build_parser
from harness.core.errors import UsageError
from harness.nightly.runner import Shard
from harness.publish import view
from harness.publish.modelindex import export
from harness.publish.report import junit, rows
from harness.records import history
from harness.zoo.manifest import load_zoo

ZOO, _ = load_zoo(REPO / "zoo.yaml")


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5])
def test_shards_cover_every_model_exactly_once(total):
    models = ZOO.models * 3  # a zoo of 9
    picked = [m for i in range(1, total + 1) for m in Shard(i, total).pick(models)]
    assert sorted(map(id, picked)) == sorted(map(id, models))
    assert (
        max(len(Shard(i, total).pick(models)) for i in range(1, total + 1))
        - min(len(Shard(i, total).pick(models)) for i in range(1, total + 1))
        <= 1
    )


def test_shards_deal_the_longest_models_first_when_their_work_is_known():
    models = ZOO.models * 3  # a zoo of 9 (names repeat: the work is per name)
    seconds = {ZOO.models[0].name: 100.0, ZOO.models[1].name: 300.0, ZOO.models[2].name: 200.0}
    shards = [Shard(i, 3).pick(models, seconds) for i in (1, 2, 3)]
    assert sorted(id(m) for s in shards for m in s) == sorted(map(id, models))  # each model exactly once
    assert [sum(seconds[m.name] for m in s) for s in shards] == [600.0, 600.0, 600.0]  # round robin: 300/900/600
    assert shards[0] == models[0:3]  # one of each, in zoo order
    assert Shard(1, 3).pick(models) == models[0::3]  # without estimates: round robin, as before


def test_shard_from_the_command_line_and_ci_variables():
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(UsageError):
            Shard.parse(bad)
    assert Shard.from_env({}) == Shard(1, 1)
    assert Shard.from_env({"HARNESS_SHARD": "3/4"}) == Shard(3, 4)
    assert Shard.from_env({"HARNESS_SHARD_INDEX": "0", "HARNESS_SHARD_TOTAL": "2"}) == Shard(1, 2)  # GitHub
    assert Shard.from_env({"JOB_COMPLETION_INDEX": "2", "HARNESS_SHARD_TOTAL": "3"}) == Shard(3, 3)  # k8s


def _rec(run_id, finished, model="m", status="pass", box=40.6, fps=10.0, device="gpu", **extra):
    return result(
        {
            "run_id": run_id,
            "finished": finished,
            "model": model,
            "status": status,
            "device": device,
            "stack": "current",
            "dataset": {"subset": None, "eval_size": None},
            "metrics": {
                "box_ap": {
                    "measured": box,
                    "documented": 40.6,
                    "tolerance": 0.3,
                    "delta": box - 40.6,
                    "status": status,
                    "reason": f"measured {box:.2f} vs documented 40.6 ± 0.3",
                }
            },
            "timing": {"fps": fps, "backend": "inference"},
            "documented": {"box_ap": 40.6},
            **extra,
        }
    )


def test_the_history_keeps_one_line_per_run_and_model_in_the_order_they_finished(tmp_path):
    path = tmp_path / "history.jsonl"
    history.append(path, [_rec("r2", "2026-01-02T00:00:00", status="fail", box=39.0)])
    history.append(path, [_rec("r1", "2026-01-01T00:00:00")])
    cur = [_rec("r3", "2026-01-03T00:00:00", status="fail", box=40.0, fps=8.5)]
    assert [e.run_id for e in history.append(path, cur)] == ["r1", "r2", "r3"]
    again = history.append(path, [_rec("r3", "2026-01-03T00:00:00", box=40.6)])  # the same run again: replaced
    assert [(e.run_id, e.status) for e in again] == [("r1", "pass"), ("r2", "fail"), ("r3", "pass")]
    assert history.load(path) == again and history.merge(again, []) == again


def test_junit_has_one_case_per_model_and_metric_with_the_reason(tmp_path):
    from junitparser import Error, Failure, JUnitXml

    recs = [
        _rec("r", "t", model="a"),
        _rec("r", "t", model="b", status="fail", box=40.1),
        _rec(
            "r",
            "t",
            model="c",
            status="error",
            metrics={},
            error={"stage": "weights", "message": "weights do not fit the model\n  missing: x"},
        ),
    ]
    (tmp_path / "junit.xml").write_bytes(junit(view.of(recs)))
    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "junit.xml"))))
    assert (suite.tests, suite.failures, suite.errors) == (3, 1, 1)
    cases = {c.classname: c for c in suite}
    assert isinstance(cases["b"].result[0], Failure)
    assert cases["b"].result[0].message.startswith("measured 40.10 vs documented 40.6 ± 0.3")
    assert isinstance(cases["c"].result[0], Error) and "weights do not fit" in cases["c"].result[0].message
    assert [r["box_ap_measured"] for r in rows(recs)] == [40.6, 40.1, None]


def test_model_index_export(tmp_path):
    files = export(ZOO, tmp_path)
    index = yaml.safe_load(files[0].read_text())
    meta = yaml.safe_load((tmp_path / index["Import"][0]).read_text())
    assert [m["Name"] for m in meta["Models"]] == [m.name for m in ZOO.models]
    assert meta["Models"][1]["Results"][1]["Metrics"] == {"mask AP": 38.1}
    assert meta["Models"][0]["Metadata"]["Backbone"] == "Res2Net50-FPN"
    assert meta["Models"][0]["Weights"].endswith(".pdparams")


def test_the_whole_zoos_export_loads_in_openmmlabs_model_index_library(tmp_path):
    """What a client reads (OpenMMLab's `model-index`, as mim and Papers with Code do): every imported model once,
    with every documented result — including tables of one README folder whose names differ only outside ASCII
    (`picodet`, `picodet: 量化`), which once shared a metafile and lost 16 models."""
    import modelindex

    from harness.zoo.kinds import KINDS
    from harness.zoo.manifest import load_zoo

    whole, _ = load_zoo(REPO / "zoos" / "paddledetection.yaml")
    files = export(whole, tmp_path)
    index = yaml.safe_load(files[0].read_text())["Import"]
    assert len(index) == len(set(index)) == len(whole.tables) and len(files) == len(index) + 1
    loaded = modelindex.load(str(files[0]))
    assert sorted(m.name for m in loaded.models) == sorted(m.name for m in whole.models)
    documented = sum(any(k.startswith(f"{p}_") for k in m.expected) for m in whole.models for p in KINDS)
    assert sum(len(m.results) for m in loaded.models) == documented
    tasks = {KINDS[p].task for m in whole.models for p in KINDS if any(k.startswith(f"{p}_") for k in m.expected)}
    assert {r.task for m in loaded.models for r in m.results} == tasks and "Body 2D Keypoint" in tasks
    by_name = {m.name: m for m in whole.models}
    for m in loaded.models:  # each result on its model's own dataset (COCO for the COCO val2017 sets)
        name = whole.dataset_of(by_name[m.name]).name
        assert {r.dataset for r in m.results} == {"COCO" if name.startswith("coco-val2017") else name}


def _valid_workflow(wf: Path) -> dict:
    """The workflow passes GitHub's schema (check-jsonschema's vendored copy) and zizmor's audits, offline."""
    exe = shutil.which("check-jsonschema") or f"{sys.prefix}/bin/check-jsonschema"
    out = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(wf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    zizmor = shutil.which("zizmor") or f"{sys.prefix}/bin/zizmor"
    out = subprocess.run([zizmor, "--offline", str(wf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    raw = yaml.safe_load(wf.read_text())
    uses = [s["uses"] for job in raw["jobs"].values() for s in job.get("steps", []) if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses)  # pinned by commit
    return raw


def test_the_nightly_workflow_validates():
    raw = _valid_workflow(REPO / ".github" / "workflows" / "nightly.yml")
    assert raw[True]["schedule"] and "self-hosted" in raw["jobs"]["shard"]["runs-on"]
    assert raw["jobs"]["shard"]["strategy"]["matrix"]["shard"] == [1, 2, 3]
    merge = next(s["run"] for s in raw["jobs"]["report"]["steps"] if "harness report" in s.get("run", ""))
    args = build_parser().parse_args(merge.split()[1:])  # the harness's own parser accepts the step
    assert args.html and args.history  # the site, with trends over the history
    pages = raw["jobs"]["pages"]
    assert pages["needs"] == "report" and pages["permissions"] == {"pages": "write", "id-token": "write"}
    # the alerts: after the page is up, with the workflow's token, allowed to write issues and nothing more
    notify = raw["jobs"]["notify"]
    assert notify["needs"] == ["report", "pages"] and notify["permissions"] == {"contents": "read", "issues": "write"}
    step = next(s for s in notify["steps"] if "harness notify" in s.get("run", ""))
    assert step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert step["env"]["HARNESS_SITE_URL"] == "${{ needs.pages.outputs.page_url }}"
    assert pages["outputs"]["page_url"] == "${{ steps.deployment.outputs.page_url }}"  # the page's published URL
    args = build_parser().parse_args(step["run"].split()[1:])
    assert args.history == Path("reports/history.jsonl") and not args.dry_run


def test_the_pull_request_workflow_runs_lint_unit_and_one_stack():
    raw = _valid_workflow(REPO / ".github" / "workflows" / "pr.yml")
    assert list(raw[True]) == ["pull_request"] and raw["permissions"] == {"contents": "read"}
    runs = {name: [s.get("run", "") for s in job["steps"]] for name, job in raw["jobs"].items()}
    assert {name: cmds[-1] for name, cmds in runs.items()} == {
        "lint": "tox -e lint",
        "unit": "tox -e unit",
        "stack": "tox -e current",
    }
    envs = configparser.ConfigParser(interpolation=None)
    envs.read(REPO / "tox.ini")
    assert {"testenv:lint", "testenv:unit"} <= set(envs.sections())  # the envs the workflow names exist


def test_the_kubernetes_indexed_job_validates_and_its_shards_cover_the_zoo():
    k8s = REPO / "deploy" / "k8s"
    files = sorted(k8s.glob("*.yaml"))
    exe = shutil.which("kubernetes-validate") or f"{sys.prefix}/bin/kubernetes-validate"
    out = subprocess.run([exe, "--strict", *map(str, files)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("passed") == 4, out.stdout + out.stderr
    job = yaml.safe_load((k8s / "nightly-job.yaml").read_text())
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    n = int(env["HARNESS_SHARD_TOTAL"]["value"])
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == n
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "controller-uid" in env["RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"]  # one run id for all shards
    # every pod index is one shard (JOB_COMPLETION_INDEX is 0-based); together they cover the zoo once
    picked = [
        m
        for i in range(n)
        for m in Shard.from_env({"JOB_COMPLETION_INDEX": str(i), "HARNESS_SHARD_TOTAL": str(n)}).pick(ZOO.models * 5)
    ]
    assert len(picked) == 15 and {m.name for m in picked} == {m.name for m in ZOO.models}
    # the harness commands in the pods are commands the CLI accepts
    from harness.cli import build_parser

    for manifest in ("nightly-job.yaml", "merge-job.yaml"):
        script = yaml.safe_load((k8s / manifest).read_text())["spec"]["template"]["spec"]["containers"][0]["args"][0]
        for command in script.split("&&"):
            argv = shlex.split(command.replace("$JOB_COMPLETION_INDEX", "0").replace("$RUN_ID", "r"))
            assert argv[0] == "harness"
            build_parser().parse_args(argv[1:])  # exits 2 on an unknown option


def test_merging_shards_that_split_the_zoo_differently_is_flagged(tmp_path):
    import json

    from harness.records.results import RUN, shard_disagreement

    def run_json(run_id: str, shard: str, digest: str) -> str:  # what `harness run` writes (results.RunRecord)
        return json.dumps(
            {
                "run_id": run_id,
                "zoo": "zoo.yaml",
                "zoo_sha256": "z",
                "harness": "0.1.0",
                "environment": {"host": "h"},
                "shard": shard,
                "models": [],
                "shard_estimates_sha256": digest,
                "started": "2026-11-25T00:00:00+00:00",
            }
        )

    dirs = []
    for i, digest in enumerate(("aaa", "aaa", "bbb"), start=1):
        d = tmp_path / f"shard-{i}"
        d.mkdir()
        (d / RUN).write_text(run_json("n1", f"{i}/3", digest))
        dirs.append(d)
    assert shard_disagreement(dirs[:2]) is None
    warning = shard_disagreement(dirs)
    assert warning and warning.startswith("run n1 (3 shards)") and "missing or doubled" in warning
    (dirs[2] / RUN).write_text(run_json("n2", "3/3", "bbb"))
    assert shard_disagreement(dirs) is None  # another run's shard: nothing to compare
