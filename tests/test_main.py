"""The `s4dm-jax` command line (s4dm_jax.main): every subcommand's --help, one-line errors for
bad arguments, the older spellings, and `collect` / `train` / `evaluate` run through it."""

import json
import os
import shutil
import sys

import pytest
from kill_utils import python_module, run

from s4dm_jax import main as cli
from s4dm_jax.data import collect, load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("train", "evaluate", "collect", "train-policy")
# The installed console script next to this interpreter (pip install -e . puts it there).
CONSOLE_SCRIPT = shutil.which("s4dm-jax", path=os.path.dirname(sys.executable))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `s4dm-jax argv...` run in this process (commands that
    stop at argument parsing only)."""
    with pytest.raises(SystemExit) as stop:
        cli.run(list(argv))
    out = capsys.readouterr()
    code = stop.value.code
    return (code if isinstance(code, int) else 1 if code else 0), out.out, out.err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    code, out, err = run_cli(capsys, command, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: s4dm-jax {command}")
    assert ("--workdir" in out and "--config" in out) if command in ("train", "evaluate") else (
        "--env" in out)


def test_top_level_help_lists_the_commands(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "invalid choice: 'bogus'"),
    (["collect", "--env", "moon", "--dataset", "medium"], "argument --env: invalid choice"),
    (["collect", "--env", "hopper"], "the following arguments are required: --dataset"),
    (["collect", "--env", "hopper", "--dataset", "medium", "--frobnicate"],
     "unrecognized arguments: --frobnicate"),
    (["collect", "--env", "hopper", "--dataset", "medium", "--steps", "-5"],
     "--steps must be an integer >= 1, got -5"),
    (["train-policy", "--env", "hopper", "--train-steps", "0"],
     "--train-steps must be an integer >= 1, got 0"),
    (["train-policy", "--env", "hopper", "--train-steps", "5", "--target-return", "1"],
     "not allowed with argument"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("S4DM_RUNS_PATH", str(tmp_path))
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("argv, message", [
    (["train", "--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
    (["evaluate", "--config.batchsize=3"], "does not exist: 'batchsize'"),
    (["--config=configs/nope.py"], "nope.py"),  # no command: train, as before
])
def test_bad_train_flags_are_one_line_errors(argv, message, tmp_path):
    done = run(python_module("s4dm_jax.main", *argv, f"--workdir={tmp_path / 'run'}"), cwd=ROOT)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(CONSOLE_SCRIPT is None, reason="package not installed with its scripts")
def test_console_script_and_older_spellings_reach_the_same_commands(tmp_path):
    for cmd in ([CONSOLE_SCRIPT, "train-policy", "--help"],
                python_module("s4dm_jax.main", "--helpfull"),  # no command: train
                python_module("s4dm_jax.data.collect", "--help"),
                python_module("s4dm_jax.data.collect", "train-policy", "--help")):
        done = run(cmd, cwd=str(tmp_path))
        assert done.returncode == 0, (cmd, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
    done = run(python_module("s4dm_jax.data.collect", "--env", "hopper", "--dataset", "medium",
                             "--steps", "-5"), cwd=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: --steps must be an integer >= 1, got -5"


def test_collect_subcommand_writes_a_dataset_like_the_module(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mujoco")
    monkeypatch.chdir(tmp_path)
    argv = ["--env", "hopper", "--dataset", "random", "--steps", "30", "--ref-episodes", "1",
            "--no-progress"]
    code, out, err = run_cli(capsys, "collect", *argv, "--root", str(tmp_path / "a"))
    assert code == 0, err
    summary = json.loads(out[out.index("{"):])
    same = collect.main([*argv, "--root", str(tmp_path / "b")])
    capsys.readouterr()
    assert {k: v for k, v in summary.items() if "time" not in k and k != "path"} == {
        k: v for k, v in same.items() if "time" not in k and k != "path"}
    loaded = load_dataset(summary["path"])
    assert loaded.num_steps == 30
    assert loaded.ref_min_score == pytest.approx(summary["ref_min_score"])


def test_train_then_evaluate_subcommands(tmp_path):
    workdir = tmp_path / "run"
    tiny = [f"--config={ROOT}/configs/bc.py", f"--workdir={workdir}", "--config.num_steps=2",
            "--config.steps_per_call=2", "--config.batch_size=8", "--config.eval.episodes=1",
            "--config.eval.max_episode_steps=5", "--noprogress", "--compilation_cache_dir="]
    trained = run(python_module("s4dm_jax.main", "train", *tiny), cwd=str(tmp_path))
    assert trained.returncode == 0, trained.stderr[-3000:]
    first = json.loads((workdir / "results.json").read_text())
    evaluated = run(python_module("s4dm_jax.main", "evaluate", *tiny,
                                  "--config.eval.max_episode_steps=7"), cwd=str(tmp_path))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((workdir / "results.json").read_text())
    assert first["trained_steps"] == again["trained_steps"] == 2
    assert again["config"]["eval"]["max_episode_steps"] == 7  # evaluated anew, not retrained

