"""Base experiment config shared by every model (see `get_base_config`).

Every field can be overridden on the command line, e.g. `--config.batch_size=128`.
The per-model files (s4dm.py, dt.py, mamba.py, bc.py) call `get_base_config(preset)` and fill in
`config.model` and the optimiser; `preset` is "<env>-<dataset>" (e.g. "hopper-medium") or
"embedded" (the small dataset shipped in the package; the default), whose CPU-sized settings
are defined once in presets.py.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from s4dm_jax.data.tmaze import parse_spec

# Target returns per environment family (Decision Transformer paper / code).
TARGET_RETURNS = {
    "hopper": (3600.0, 1800.0),
    "halfcheetah": (12000.0, 6000.0),
    "walker2d": (5000.0, 2500.0),
}
ENVS = tuple(TARGET_RETURNS)
DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert")


def parse_preset(preset: str | None) -> tuple[str, str]:
    """'hopper-medium-replay' -> ('hopper', 'medium-replay'); '' / 'embedded' -> embedded;
    'tmaze-passive-L100-mixed' -> ('tmaze', 'passive-L100-mixed') (generated T-Maze data)."""
    if not preset or preset == "embedded":
        return "hopper", "embedded"
    if preset.startswith("tmaze-"):
        return "tmaze", preset[len("tmaze-"):]
    env, _, dataset = preset.partition("-")
    if env not in ENVS or dataset not in DATASETS:
        raise ValueError(
            f"unknown config preset {preset!r}: use 'embedded' or '<env>-<dataset>' with env in "
            f"{ENVS} and dataset in {DATASETS} (e.g. 'hopper-medium'), then point "
            "--config.dataset at a Minari id or D4RL .hdf5 file if yours lives elsewhere"
        )
    return env, dataset


def get_base_config(preset: str | None = None) -> ml_collections.ConfigDict:
    env, dataset = parse_preset(preset)
    if env == "tmaze":
        return tmaze_config(dataset)
    c = ml_collections.ConfigDict()
    c.preset = preset or "embedded"

    # Data. `dataset` is "embedded", a Minari id, or a path to a D4RL .hdf5 file.
    c.dataset = "embedded" if dataset == "embedded" else f"s4dm/{env}/{dataset}-v0"
    c.download = False  # let Minari download the id when a network is available
    c.env_id = ""  # gymnasium id to evaluate in; "" = from the dataset
    c.ref_min_score = config_dict.placeholder(float)  # override the dataset's reference scores
    c.ref_max_score = config_dict.placeholder(float)
    c.rtg_scale = 1000.0
    # %BC: < 1 trains on the best episodes by return only. "timesteps" (the DT reference's
    # rule): the best episodes until they hold top_fraction of all timesteps; "episodes": the
    # best floor(top_fraction * number of episodes) episodes.
    c.top_fraction = 1.0
    c.top_fraction_by = "timesteps"
    c.delayed_reward = False  # sparse variant: an episode's whole reward at its last step
    # Training windows start uniformly inside episodes (DT recipe) or, when True, at the episode
    # start: recurrent models (S4DM, Decision Mamba with inference="recurrent") then see in
    # training the same history their step-wise inference state sees. Needs context_len >= the
    # longest episode (checked); every transition weighs the same in the loss (data.sampling).
    c.episode_start_windows = False

    # Model: `name` plus the model's keyword arguments (see s4dm_jax.models.DEFAULTS).
    c.model = ml_collections.ConfigDict()

    # Optimisation (AdamW, linear warmup, global-norm clipping; SSM parameters get their own
    # learning rate and no weight decay).
    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-4
    c.optim.ssm_learning_rate = 1e-3
    c.optim.weight_decay = 1e-4
    c.optim.warmup_steps = 10_000
    c.optim.grad_clip = 0.25
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999

    c.batch_size = 64
    c.num_steps = 100_000
    # Train steps run as chunks inside one compiled loop; a chunk has at most steps_per_call
    # steps and is sized to take about progress_every_s seconds (the progress bar moves).
    c.steps_per_call = 100
    c.progress_every_s = 5.0
    c.seed = 0
    c.seeds = 1  # independent seeds trained together (vmapped)
    # Optimiser values trained side by side in the same vmapped program: every combination of
    # the non-empty lists below, each with `seeds` seeds (empty: config.optim's value). E.g.
    # --config.sweep.learning_rate='(1e-4, 3e-4, 1e-3)'. Shape-changing settings are separate
    # runs (experiments/sweep.py).
    c.sweep = ml_collections.ConfigDict({"learning_rate": (), "ssm_learning_rate": (),
                                         "weight_decay": ()})
    c.seed_axis_devices = 1  # devices on the mesh's "seed" axis (rest: "data" axis)

    c.log_every = 500
    c.checkpoint_every = 5_000
    c.keep_checkpoints = 3

    # Evaluation in gymnasium vector envs, driven by the models' `step` API.
    c.eval = ml_collections.ConfigDict()
    c.eval.target_returns = list(TARGET_RETURNS[env])
    # Per seed and target, as the DT reference and CORL (100). The few-minute `embedded` presets
    # of the model configs use 5.
    c.eval.episodes = 100
    c.eval.max_episode_steps = 1000
    # Also evaluate every N train steps (0: only at the end): TensorBoard and the training record.
    c.eval.every = 0
    c.eval.gif = False  # render one episode to eval.gif (needs MuJoCo rendering)
    if dataset == "embedded":
        c.eval.target_returns = [1800.0]
    return c


def tmaze_config(dataset: str) -> ml_collections.ConfigDict:
    """Base config of a T-Maze preset ('passive-L100-mixed': data 'tmaze:passive-L100-mixed',
    s4dm_jax.data.tmaze); the return is the success (0 or 1), the target is 1."""
    c = get_base_config("embedded")
    c.preset = f"tmaze-{dataset}"
    c.dataset = f"tmaze:{dataset}"
    c.rtg_scale = 1.0
    c.eval.target_returns = [1.0]
    # the maze ends its episodes itself, after corridor length + 1 (passive) or + 3 (active)
    c.eval.max_episode_steps = parse_spec(c.dataset)["corridor_length"] + 3
    c.optim.warmup_steps = 100
    c.num_steps = 2000
    c.log_every = 100
    c.checkpoint_every = 1000
    return c
