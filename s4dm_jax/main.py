"""The `s4dm-jax` command line: one entry point, one subcommand per job.

    s4dm-jax train --config=configs/s4dm.py:hopper-medium --workdir=runs/s4dm-hopper
    s4dm-jax evaluate --config=configs/s4dm.py:hopper-medium --workdir=runs/s4dm-hopper
    s4dm-jax collect --env hopper --dataset medium --steps 200000 --seed 0
    s4dm-jax train-policy --env hopper --train-steps 1000000 --out runs/expert

`python -m s4dm_jax.main ...` is the same program. Without a subcommand `train` is meant, so
`python -m s4dm_jax.main --config=...` works as before, and `python -m s4dm_jax.data.collect
[train-policy] ...` is the older spelling of `collect` / `train-policy`. `evaluate` is `train
--evaluate_only`: it evaluates the workdir's latest checkpoint as it is.

One style: argparse chooses the subcommand and parses the options of `collect` and
`train-policy`; `train` and `evaluate` hand their options to absl, because ml_collections'
config flags (`--config=file.py:preset`, `--config.a.b=value` for any config field, the
Flax-examples convention) exist only as absl flags. Every command reports bad input as one
line `error: ...` on stderr with exit status 1, without a traceback; `COMMAND --help` lists a
command's options. The experiment launchers (benchmark grid, sweeps, ablations, report) are
scripts in the repository's experiments/ folder, not installed commands.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from s4dm_jax import configs as _configs
from s4dm_jax.argparsing import ArgumentParser
from s4dm_jax.data import DatasetError, collect
from s4dm_jax.evaluate.report import markdown_summary
from s4dm_jax.evaluate.rollout import EvaluationError
from s4dm_jax.train.checkpoint import CheckpointError
from s4dm_jax.train.compile_cache import default_cache_dir, enable_compilation_cache
from s4dm_jax.train.stop_signals import TrainingInterrupted
from s4dm_jax.train.trainer import ConfigError, TrainingDivergedError, train_and_evaluate
from s4dm_jax.train.workdir_lock import WorkdirBusyError

# configs/ is installed as s4dm_jax.configs, so the default works from any install.
_DEFAULT_CONFIG = os.path.join(os.path.dirname(_configs.__file__), "s4dm.py")

# No default here: ml_collections would load a default config file (with the command line's
# --config.* overrides) when this module is imported, where a bad override is a traceback. `run`
# names the default file on the command line instead, so it is loaded by the flag parser.
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (optionally `file.py:preset`); default: "
    "configs/s4dm.py (the embedded preset).", lock_config=True,
)
flags.DEFINE_string("workdir", "runs/s4dm-embedded",
                    "Directory for checkpoints, TensorBoard logs and results (resumes if present).")
flags.DEFINE_bool("distributed", False,
                  "Multi-process training with jax.distributed: every process runs this command; "
                  "on a TPU pod / Slurm / Kubernetes the processes are found automatically, "
                  "elsewhere pass --coordinator_address, --num_processes and --process_id. CPU "
                  "processes use gloo collectives.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_string("compilation_cache_dir", None,
                    "Directory of JAX's persistent compilation cache (a second run of the same "
                    "config starts in seconds). Default: $S4DM_JAX_CACHE or "
                    "~/.cache/s4dm_jax/xla; pass --compilation_cache_dir= (empty) to disable.")
flags.DEFINE_bool("evaluate_only", False,
                  "Do not train: evaluate the workdir's latest checkpoint as it is, labelled with "
                  "its real step (re-evaluates a finished run, whose stored results are otherwise "
                  "reported unchanged). `s4dm-jax evaluate` sets it.")
FLAGS = flags.FLAGS

TRAIN_HELP = ("Train a model from a config and evaluate it (resumes the workdir). Options are "
              "absl flags: `s4dm-jax train --help` lists them.")
EVALUATE_HELP = ("Evaluate the workdir's latest checkpoint as it is, without training "
                 "(`train --evaluate_only`); same options as train.")
# Commands whose options absl parses (the rest of the command line goes to it unchanged).
ABSL_COMMANDS = ("train", "evaluate")


def main(argv):
    """`s4dm-jax train` after its flags are parsed: train and evaluate, print the summary."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    if FLAGS.distributed:
        # collectives between CPU processes (no effect on GPU/TPU); set before initialize,
        # which must come before anything touches a device (importing jax does not)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    cache = FLAGS.compilation_cache_dir
    enable_compilation_cache(default_cache_dir() if cache is None else cache)
    try:
        results = train_and_evaluate(FLAGS.config, FLAGS.workdir, show_progress=FLAGS.progress,
                                     evaluate_only=FLAGS.evaluate_only)
    except (DatasetError, ConfigError, CheckpointError, EvaluationError,
            TrainingDivergedError, WorkdirBusyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:  # SIGTERM / SIGINT: checkpoint written, resumable
        print(str(e), file=sys.stderr)
        return e.exit_code
    workdir = os.path.abspath(FLAGS.workdir)
    print(markdown_summary(results))
    print(f"Outputs in {workdir}:")
    for name in ("results.json", "results.md", "curves.png", "eval.gif", "train_history.jsonl",
                 "checkpoints", "tensorboard"):
        if os.path.exists(os.path.join(workdir, name)):
            print(f"  {os.path.join(workdir, name)}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}")
    return 0


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that reports a bad flag or `--config` override (unknown field, wrong
    type, missing config file or preset) in one paragraph, without a traceback, and exits 1."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.get("preset")  # a config file's load error is raised on first access
        return rest
    except Exception as e:  # flags.Error, or ml_collections' AttributeError/OSError/ValueError
        print(f"error: {flag_error_message(e)} Pass --helpfull to list the flags; "
              "configs/base.py and the model files list every config field.", file=sys.stderr)
        sys.exit(1)


def flag_error_message(e: Exception) -> str:
    """One paragraph from a flag-parsing exception (drops an embedded traceback)."""
    unknown_field = isinstance(e, AttributeError | KeyError)
    inner = e
    while isinstance(inner, AttributeError | KeyError) and inner.args:  # ml_collections nests
        inner = inner.args[0]  # KeyError(message) inside AttributeError(KeyError)
    lines = [line.strip() for line in str(inner).strip().splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):  # keep what precedes it + the error
        head = lines[:next(i for i, line in enumerate(lines) if line.startswith("Traceback"))]
        lines = head + [lines[-1]]
    text = " ".join(line if line.endswith((".", ":", "?", "!")) else line + "."
                    for line in lines[:-1])
    text = f"{text} {lines[-1]}".strip() if lines else type(e).__name__
    if unknown_field:
        text = f"a --config override names a field that does not exist: {text}"
    return text if text.endswith((".", "?")) else text + "."


def absl_command_help(command: str) -> str:
    """`s4dm-jax train|evaluate --help`: usage and this module's absl flags (absl's own --help
    lists the flags of the running script, which the console script does not define)."""
    module = next(name for name, defined in FLAGS.flags_by_module_dict().items()
                  if any(flag.name == "workdir" for flag in defined))
    what = TRAIN_HELP if command == "train" else EVALUATE_HELP
    return (f"usage: s4dm-jax {command} [--config=FILE.py[:PRESET]] [--config.FIELD=VALUE ...] "
            f"[--workdir=DIR] [flags]\n\n{what.split(' Options are')[0]} A config field not "
            "named on the line keeps the config file's value (configs/base.py lists them all); "
            f"--helpfull lists every flag.\n\n{FLAGS.module_help(module)}")


def build_parser() -> ArgumentParser:
    """The `s4dm-jax` parser: one subcommand per job (train/evaluate options go to absl)."""
    parser = ArgumentParser(
        prog="s4dm-jax",
        description="S4DM and sequence-model baselines for offline RL. Without a command, "
                    "`train` is meant (`s4dm-jax --config=...` as in earlier versions).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("train", help=TRAIN_HELP, add_help=False)
    commands.add_parser("evaluate", help=EVALUATE_HELP, add_help=False)
    collect.add_commands(commands)
    return parser


def run(argv: list[str] | None = None):
    """Console-script entry point: `s4dm-jax [COMMAND] [options]`; exits with the command's
    status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["train", *argv]  # no command: train, as `python -m s4dm_jax.main` always did
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ABSL_COMMANDS:
        if any(word in ("-h", "--help", "--helpshort", "--helpfull") for word in rest):
            print(absl_command_help(args.command))
            if "--helpfull" in rest:
                print(f"\nEvery flag:\n{FLAGS.get_help()}")
            sys.exit(0)  # absl's own help flags exit with status 1
        flag_argv = [f"s4dm-jax {args.command}", *rest]
        if not any(re.match(r"--?config(=|$)", word) for word in rest):
            flag_argv.insert(1, f"--config={_DEFAULT_CONFIG}")
        if args.command == "evaluate":
            flag_argv.append("--evaluate_only")
        # ml_collections reads the --config.* overrides from sys.argv when it parses --config
        sys.argv = flag_argv
        app.run(lambda rest_argv: sys.exit(main(rest_argv)), argv=flag_argv,
                flags_parser=parse_flags)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        collect.run_command(args, "s4dm-jax " + shlex.join(argv))
    except collect.INPUT_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    run()
