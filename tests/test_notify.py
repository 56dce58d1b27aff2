"""`harness notify`: a GitHub issue per model that the page calls new tonight, against a stand-in for GitHub on
127.0.0.1 (tests/github_standin.py): opened, updated on the next night, closed with a comment when the model
passes, nothing written twice; GitHub's rate limit and 5xx answers; no token; the dry run. The nights are written
by the harness's own record writers (results.write, history.append) from tests/nights.py's made-up records. The
rules themselves (what is new, speed, improvements) are in tests/test_alerts.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from github_standin import REPO, TOKEN, GitHubStandIn, RateLimited, Status
from nights import ZOO, record

from harness.cli import main
from harness.publish import github, view
from harness.publish import notify as alerts
from harness.records import history, results

FASTER = "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco"
MASK = "mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco"  # nights.py: passes nights 0-2, 41.2 / 37.0 on night 3
PASS, REGRESSED = 2, 3  # the nights.py night whose numbers a model gets


def night(root: Path, day: int, like: dict[str, int], **extra) -> Path:
    """A run directory of two models (each with the numbers of a nights.py night), appended to the history."""
    run_id = f"202612{day:02d}-0100"
    run_dir = root / "runs" / run_id
    for model, n in like.items():
        rec = record(model, n)
        started = f"2026-12-{day:02d}T01:00:00+00:00"
        finished = f"2026-12-{day:02d}T02:{list(ZOO).index(model):02d}:00+00:00"
        results.write(run_dir, {**rec, "run_id": run_id, "started": started, "finished": finished, **extra})
    history.append(root / "history.jsonl", results.read([run_dir]))
    return run_dir


@pytest.fixture
def gh(monkeypatch):
    with GitHubStandIn() as server:
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", server.base)
        for name in ("GITHUB_SERVER_URL", "GITHUB_RUN_ID", "HARNESS_HISTORY", "HARNESS_SITE_URL"):
            monkeypatch.delenv(name, raising=False)
        yield server


def notify(run: Path, *more: str) -> int:
    return main(["notify", str(run), "--history", str(run.parent.parent / "history.jsonl"), *more])


def test_a_regression_opens_one_issue_and_a_passing_model_none(gh, tmp_path, capsys):
    for day in (1, 2):
        night(tmp_path, day, {FASTER: PASS, MASK: PASS})
    run = night(tmp_path, 3, {FASTER: PASS, MASK: REGRESSED})
    assert notify(run, "--site-url", "https://zoo.example/site/") == 0
    assert len(gh.issues) == 1 and [m for m, _ in gh.writes()] == ["POST"]
    issue = gh.issues[0]
    assert issue["title"] == f"Failing: {MASK} (pass → fail: box_ap -1.20)"
    assert [lab["name"] for lab in issue["labels"]] == ["zoo-regression"]
    body = issue["body"]
    assert body.startswith(f"<!-- harness-notify model={MASK} -->\n**{MASK}**: pass → fail: box_ap 41.20")
    assert "| box_ap | 41.20 | 42.40 | ± 0.3 | -1.20 | 42.40 | -1.20 | fail |" in body  # against tolerance and pass
    assert "| mask_ap | 37.00 | 38.10 | ± 0.3 | -1.10 | 38.10 | -1.10 | fail |" in body
    assert "last pass (`20261202-0100`)" in body and "fail since `20261203-0100` (1 night)" in body
    # the records of these nights name no PaddleDetection commit: paddle and the device are what both recorded
    assert "same environment as 20261202-0100 (paddle, device)" in body
    assert f"[the model's page](https://zoo.example/site/models/{MASK}.html)" in body
    assert f"(https://zoo.example/site/runs/20261203-0100/{MASK}.html)" in body
    assert "(https://zoo.example/site/nights/20261203-0100.html)" in body
    assert "closes this issue on the night the model measures within tolerance again" in body
    assert capsys.readouterr().out.startswith(f"opened #1: Failing: {MASK}")


def test_the_next_night_of_the_same_regression_updates_the_issue_and_the_same_night_writes_nothing(gh, tmp_path):
    night(tmp_path, 1, {FASTER: PASS, MASK: PASS})
    assert notify(night(tmp_path, 2, {FASTER: PASS, MASK: REGRESSED})) == 0
    # the next night: paddle changed, and the regression goes on
    run = night(tmp_path, 3, {FASTER: PASS, MASK: REGRESSED}, paddle="3.4.0")
    assert notify(run) == 0
    assert len(gh.issues) == 1 and [m for m, _ in gh.writes()] == ["POST", "PATCH"]
    body = gh.issues[0]["body"]
    assert "night: `20261203-0100`; fail since `20261202-0100` (2 nights)" in body  # since the first night
    assert "| paddle | 3.3.1 | 3.4.0 |" in body  # the environment diff against the last pass
    assert gh.issues[0]["title"] == f"Failing: {MASK} (fail: box_ap -1.20)"
    # idempotent: the same night again reads, compares, and writes nothing
    before = len(gh.writes())
    assert notify(run) == 0 and notify(run) == 0
    assert len(gh.writes()) == before and len(gh.issues) == 1


def test_a_model_that_passes_again_closes_its_issue_with_a_comment_once(gh, tmp_path, capsys):
    night(tmp_path, 1, {FASTER: PASS, MASK: PASS})
    assert notify(night(tmp_path, 2, {FASTER: PASS, MASK: REGRESSED})) == 0
    run = night(tmp_path, 3, {FASTER: PASS, MASK: PASS})
    assert notify(run) == 0
    issue = gh.issues[0]
    assert issue["state"] == "closed" and issue["state_reason"] == "completed"
    [comment] = gh.comments[1]
    assert f"**{MASK}** passes again in night `20261203-0100`: box_ap 42.40 (documented 42.4 ± 0.3" in comment["body"]
    assert "closed #1" in capsys.readouterr().out
    before = len(gh.writes())
    assert notify(run) == 0 and len(gh.writes()) == before  # closed: nothing left to do
    # a close cut short after its comment (the job killed): the re-run closes without a second comment
    issue["state"] = "open"
    assert notify(run) == 0
    assert issue["state"] == "closed" and len(gh.comments[1]) == 1


def test_the_alert_is_found_by_its_marker_across_pages_among_others_issues(gh, tmp_path):
    gh.page_size = 2
    for i in range(4):
        gh.add_issue(f"someone's issue {i}", "no marker here", ["zoo-regression"])
    gh.add_issue("a pull request", f"<!-- harness-notify model={MASK} -->", ["zoo-regression"], pull_request=True)
    night(tmp_path, 1, {FASTER: PASS, MASK: PASS})
    run = night(tmp_path, 2, {FASTER: PASS, MASK: REGRESSED})
    theirs = gh.add_issue("renamed by a person", f"<!-- harness-notify model={MASK} -->\nold words", ["zoo-regression"])
    assert notify(run) == 0
    assert [m for m, _ in gh.writes()] == ["PATCH"] and theirs[
        "title"
    ] == f"Failing: {MASK} (pass → fail: box_ap -1.20)"
    assert sum("page=3" in path for _, path in gh.requests) == 1  # the third page was read


def test_the_rate_limit_is_waited_out_then_given_up_past_max_wait(gh, tmp_path, capsys):
    night(tmp_path, 1, {MASK: PASS})
    run = night(tmp_path, 2, {MASK: REGRESSED})
    gh.fault(RateLimited(primary=True, wait=1), RateLimited(primary=False, wait=1))
    start = time.monotonic()
    assert notify(run) == 0
    assert time.monotonic() - start >= 2.0  # x-ratelimit-reset + 1 s, then retry-after: 1 s
    assert len(gh.issues) == 1 and "rate limit; waiting" in capsys.readouterr().err
    gh.fault(RateLimited(primary=True, wait=3600))
    assert notify(night(tmp_path, 3, {MASK: REGRESSED}), "--max-wait", "5") == 3
    err = capsys.readouterr().err
    assert "GitHub's rate limit: the next call is allowed at" in err and "--max-wait" in err
    assert len(gh.writes()) == 1 and max(len(line) for line in err.splitlines()) < 300


def test_5xx_is_retried_with_backoff_then_a_clear_error(gh, tmp_path):
    night(tmp_path, 1, {MASK: PASS})
    run = night(tmp_path, 2, {MASK: REGRESSED})
    night_ = view.of(results.read([run]), history.load(tmp_path / "history.jsonl"))
    sleeps: list[float] = []
    client = github.GitHub(REPO, TOKEN, gh.base, github.Policy(backoff_s=0.01), sleep=sleeps.append)
    gh.fault(Status(502), Status(503))
    [done] = alerts.notify(night_, client)
    assert done.verb == "open" and len(gh.issues) == 1 and len(sleeps) == 2 and sleeps[1] > sleeps[0]
    gh.fault(*[Status(500)] * 4)
    with pytest.raises(github.GitHubError) as err:
        alerts.notify(night_, client)
    assert err.value.exit_code == 3 and "answered 500 Internal Server Error 4 times" in str(err.value)
    assert len(str(err.value)) < 500 and "run `harness notify` again later" in str(err.value)


def test_no_token_exits_2_naming_the_variable_and_the_fix(gh, tmp_path, monkeypatch, capsys):
    night(tmp_path, 1, {MASK: PASS})
    run = night(tmp_path, 2, {MASK: REGRESSED})
    monkeypatch.delenv("GITHUB_TOKEN")
    assert notify(run) == 2
    err = capsys.readouterr().err
    assert "no token: $GITHUB_TOKEN is not set" in err and "fix: export GITHUB_TOKEN=" in err and "--dry-run" in err
    assert gh.requests == []
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")  # a token GitHub refuses: exit 2, the fix named
    assert notify(run) == 2
    assert "401: GitHub refused the token (Bad credentials)" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_writes_nothing(gh, tmp_path, monkeypatch, capsys):
    night(tmp_path, 1, {MASK: PASS})
    run = night(tmp_path, 2, {MASK: REGRESSED})
    assert notify(run, "--dry-run") == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"would open: Failing: {MASK}") and "    | box_ap | 41.20 |" in out.out
    assert "dry run, nothing written): 1 to open" in out.err
    assert gh.requests and gh.writes() == []  # with a token: the open issues read, nothing written
    monkeypatch.delenv("GITHUB_TOKEN")
    gh.requests.clear()
    assert notify(run, "--dry-run") == 0
    assert "would open" in capsys.readouterr().out and gh.requests == []  # without: no call at all
    assert notify(run, "--dry-run", "--label", "a,b") == 2  # GitHub reads a comma as two labels
    assert "--label 'a,b': not one label" in capsys.readouterr().err


def test_a_token_that_cannot_label_is_refused_before_a_second_duplicate(gh, tmp_path, capsys):
    gh.drop_labels = True  # GitHub drops labels a token may not set: later runs could never find the issue
    night(tmp_path, 1, {MASK: PASS})
    assert notify(night(tmp_path, 2, {MASK: REGRESSED})) == 2
    assert "opened without the label 'zoo-regression'" in capsys.readouterr().err


def test_alerts_are_the_pages_new_failures_and_a_missing_environment_is_said(tmp_path):
    night(tmp_path, 1, {FASTER: PASS, MASK: PASS})
    run = night(tmp_path, 2, {FASTER: PASS, MASK: REGRESSED}, paddle=None)
    tonight = view.of(results.read([run]), history.load(tmp_path / "history.jsonl"))
    [alert] = tonight.alerts
    assert [r.model for r in tonight.summary.new] == [alert.model] == [MASK] and alert.new
    assert [(n.metric, n.tonight, n.last_pass, n.documented) for n in alert.numbers] == [
        ("box_ap", 41.2, 42.4, 42.4),
        ("mask_ap", 37.0, 38.1, 38.1),
    ]
    # tonight's paddle is not recorded: no paddle change is claimed, only what both nights recorded is compared
    assert alert.compared == ("device",) and alert.environment == ()
    assert "same environment as 20261201-0100 (device)" in alerts.body(alert)


def test_notify_imports_no_paddle(tmp_path):
    night(tmp_path, 1, {MASK: PASS})
    run = night(tmp_path, 2, {MASK: REGRESSED})
    argv = ["notify", str(run), "--dry-run", "--history", str(tmp_path / "history.jsonl")]
    code = (
        f"import sys\nfrom harness.cli import main\nassert main({argv!r}) == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('paddle', 'ppdet')], 'paddle imported'"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-1000:]
