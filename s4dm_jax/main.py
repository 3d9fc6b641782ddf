"""Command-line entry point (Flax-examples style).

    python -m s4dm_jax.main --config=configs/s4dm.py:hopper-medium --workdir=runs/s4dm-hopper
    python -m s4dm_jax.main          # S4DM on the embedded dataset, a few minutes on a CPU

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
                  "Call jax.distributed.initialize() first (multi-host TPU/GPU jobs).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    if FLAGS.distributed:
        import jax

        jax.distributed.initialize()
    from s4dm_jax.data import DatasetError
    from s4dm_jax.evaluate.rollout import EvaluationError
    from s4dm_jax.train.checkpoint import CheckpointMismatchError
    from s4dm_jax.train.trainer import ConfigError, TrainingDivergedError, train_and_evaluate

    config = FLAGS.config
    try:
        results = train_and_evaluate(config, FLAGS.workdir, show_progress=FLAGS.progress)
    except (DatasetError, ConfigError, CheckpointMismatchError, EvaluationError,
            TrainingDivergedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from s4dm_jax.evaluate.report import markdown_summary

    workdir = os.path.abspath(FLAGS.workdir)
    print(markdown_summary(results))
    print(f"Outputs in {workdir}:")
    for name in ("results.json", "results.md", "curves.png", "eval.gif", "checkpoints",
                 "tensorboard"):
        if os.path.exists(os.path.join(workdir, name)):
            print(f"  {os.path.join(workdir, name)}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}")
    return 0


def run():
    """Console-script entry point."""
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
