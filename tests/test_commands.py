"""The commands one module each (harness/commands/): their parsers, help texts, the library API on top of them,
and what `run`, `plan` print. In-process and paddle-free."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from conftest import RECORD, REPO

import harness
from harness.cli import build_parser, command_of
from harness.commands import COMMANDS, options
from harness.core.errors import UsageError
from harness.nightly.schedule import Unit

NAMES = [c.NAME for c in COMMANDS]


def cli(argv: list[str]) -> int:
    """`main` without its signal handlers (this is pytest's process): parse, then the command's own main."""
    args = build_parser([c for c in (command_of(argv),) if c]).parse_args(argv)
    return args.func(args)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


@pytest.mark.parametrize("command", COMMANDS, ids=NAMES)
def test_every_command_builds_its_parser_from_its_module(command):
    parser = argparse.ArgumentParser(prog="harness")
    made = command.add_parser(parser.add_subparsers(), options.common(sub=True))
    assert made.prog == f"harness {command.NAME}" and made.get_default("func") is command.main
    assert made.epilog and "examples:" in made.epilog  # every command shows how it is used
    only = _subparsers(build_parser([command.NAME])).choices[command.NAME]
    assert only.get_default("func") is command.main
    others = _subparsers(build_parser([command.NAME])).choices
    assert all(others[n].get_default("func") is None for n in NAMES if n != command.NAME)  # not built


def test_the_whole_parser_has_every_command_and_finds_the_command_word():
    assert list(_subparsers(build_parser()).choices) == NAMES == sorted(set(NAMES), key=NAMES.index)
    assert command_of(["--zoo", "list", "-v", "verify", "m"]) == "verify"  # `list` is --zoo's value
    assert command_of(["--stack=previous", "plan"]) == "plan" and command_of(["--help"]) is None
    assert command_of(["nonsense", "list"]) is None


@pytest.mark.parametrize("command", ["", *NAMES])
def test_help_of_every_command_exits_0_and_says_what_the_tool_is(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli([command, "--help"] if command else ["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "examples:" in text
    assert "Res2Net model zoo" not in text and "res2net model zoo" not in text.lower()
    if not command:
        assert "PaddleDetection model zoos" in " ".join(text.split())


def test_verify_help_names_the_default_scorer_and_choices_come_from_their_owners(capsys):
    from harness.model.timing import BACKENDS
    from harness.score.scoring import DEFAULT, SCORERS

    with pytest.raises(SystemExit):
        cli(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"with {DEFAULT}" in text and "score with pycocotools" not in text
    verify = _subparsers(build_parser(["verify"])).choices["verify"]
    chosen = {a.dest: a.choices for a in verify._actions if a.choices}
    assert tuple(chosen["scorer"]) == SCORERS and tuple(chosen["backends"]) == BACKENDS
    assert tuple(chosen["device"]) == ("auto", "cpu", "gpu")


def test_the_library_api_is_what_the_commands_call(tmp_path, monkeypatch):
    from harness.commands import report, verify
    from harness.publish import view
    from harness.publish.report import markdown
    from harness.records.results import read, write

    zoo = harness.load_zoo(REPO / "zoo.yaml")
    assert len(zoo.models) == 3 and zoo.model(zoo.models[0].name) is zoo.models[0]
    assert harness.verify is verify.verify and harness.Options().device == "auto"
    with pytest.raises(UsageError, match="unknown model 'faster_rcnn'"):
        harness.verify("faster_rcnn", zoo=REPO / "zoo.yaml")
    rec = {**RECORD, "model": zoo.models[0].name, "status": "fail"}
    write(tmp_path / "run", rec)
    text = harness.report([tmp_path / "run"], out=tmp_path / "r.md")
    assert text == markdown(view.of(read([tmp_path / "run"]))) == (tmp_path / "r.md").read_text()
    assert "| fail " in text
    assert harness.report is report.report and harness.report([str(tmp_path / "run")]) == text


def test_import_harness_imports_neither_paddle_nor_the_commands():
    code = "import sys, harness\nprint(sorted(m for m in sys.modules if m.startswith(('paddle', 'harness.'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_progress_line_of_a_starting_unit():
    from harness.nightly.runner import progress_line

    assert progress_line(12, 240, Unit("ppyoloe_crn_l_300e_coco", 0, 4, 9.0), 3723.4) == (
        "[12/240] ppyoloe_crn_l_300e_coco … slice 1/4 · ETA 1:02:03"
    )
    assert progress_line(1, 3, Unit("m", 0, 1, 9.0), 59.6) == "[1/3] m · ETA 0:01:00"
    long = progress_line(2, 3, Unit("x" * 200, 1, 2, 1.0), 0)
    assert len(long) < 100 and long.endswith("… slice 2/2 · ETA 0:00:00")


def test_the_default_history_of_a_run_is_its_own_not_the_repositorys(tmp_path, monkeypatch):
    from harness.commands.run import history_path

    monkeypatch.delenv("HARNESS_HISTORY", raising=False)
    assert history_path(None, tmp_path / "run") == tmp_path / "run" / "history.jsonl"
    assert history_path(tmp_path / "h.jsonl", tmp_path / "run") == tmp_path / "h.jsonl"
    monkeypatch.setenv("HARNESS_HISTORY", str(tmp_path / "env.jsonl"))
    assert history_path(None, tmp_path / "run") == tmp_path / "env.jsonl"
    assert history_path(tmp_path / "h.jsonl", tmp_path / "run") == tmp_path / "h.jsonl"


def test_plan_on_a_cpu_says_cpu_hours_and_reads_the_history_at_its_eval_size(tmp_path, capsys):
    zoo = harness.load_zoo(REPO / "zoo.yaml")
    entry = {
        "run_id": "r1",
        "model": zoo.models[0].name,
        "status": "fail",
        "metrics": {},
        "conditions": {"device": "cpu", "eval_size": [320, 533]},
        "seconds": {"startup": 5.0, "eval": 40.0, "images": 4, "timing": 0.0},
    }
    hist = tmp_path / "history.jsonl"
    hist.write_text(json.dumps(entry) + "\n")
    base = ["plan", "--zoo", str(REPO / "zoo.yaml"), "--gpus", "2", "--history", str(hist), "--device", "cpu"]
    assert cli([*base, "--eval-size", "320"]) == 0
    text = capsys.readouterr().out
    assert "CPU-hours" in text and "GPU-hours" not in text and "1 from history" in text
    assert cli(base) == 0  # a full-size plan does not take a 320 px run's durations
    assert "3 from default" in capsys.readouterr().out
    assert cli(base[:-2]) == 0 and "GPU-hours" in capsys.readouterr().out
