"""Command-line entry point (Flax-examples style).

    python -m s4dm_jax.main --config=configs/s4dm.py:hopper-medium --workdir=runs/s4dm-hopper
    python -m s4dm_jax.main          # S4DM on the embedded dataset, a few minutes on a CPU
    python -m s4dm_jax.main --workdir=runs/x --evaluate_only   # evaluate a checkpoint as it is

`--config.a.b=value` overrides any config field. Installed as the `s4dm-jax` console script.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from s4dm_jax import configs as _configs

# configs/ is installed as s4dm_jax.configs, so the default works from any install.
_DEFAULT_CONFIG = os.path.join(os.path.dirname(_configs.__file__), "s4dm.py")

config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Experiment config file (optionally `file.py:preset`).",
    lock_config=True,
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
                  "reported unchanged).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    if FLAGS.distributed:
        import jax

        # collectives between CPU processes (no effect on GPU/TPU); set before initialize,
        # which must come before anything touches a device
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    from s4dm_jax.train.compile_cache import default_cache_dir, enable_compilation_cache

    cache = FLAGS.compilation_cache_dir
    enable_compilation_cache(default_cache_dir() if cache is None else cache)
    from s4dm_jax.data import DatasetError
    from s4dm_jax.evaluate.rollout import EvaluationError
    from s4dm_jax.train.checkpoint import CheckpointError
    from s4dm_jax.train.trainer import ConfigError, TrainingDivergedError, train_and_evaluate

    config = FLAGS.config
    try:
        results = train_and_evaluate(config, FLAGS.workdir, show_progress=FLAGS.progress,
                                     evaluate_only=FLAGS.evaluate_only)
    except (DatasetError, ConfigError, CheckpointError, EvaluationError,
            TrainingDivergedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from s4dm_jax.evaluate.report import markdown_summary

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
        return FLAGS(argv)
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


def run():
    """Console-script entry point."""
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)


if __name__ == "__main__":
    run()
