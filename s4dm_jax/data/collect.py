"""Generate D4RL-recipe offline RL datasets on gymnasium MuJoCo -v5 envs, written as Minari
datasets (bulk path ``minari.create_dataset_from_buffers``).

Recipe (Fu et al. 2020, D4RL):
  random         uniform random actions
  medium         a SAC policy stopped when its (stochastic) evaluation return reaches about 1/3
                 of the expert reference return, rolled out for --steps steps
  medium-replay  every transition in that SAC run's replay buffer up to the stopping point,
                 episodes in collection order
  expert         a fully trained policy (``train-policy --train-steps N``) rolled out
  medium-expert  medium + expert episodes (half of --steps each)
The "expert" reference return is D4RL's published max score (hopper 3234.3, halfcheetah 12135.0,
walker2d 4592.3), because training a real expert is out of reach on a CPU; ref_min_score is the
measured mean return of the uniform random policy.

Usage::

    python -m s4dm_jax.data.collect --env hopper --dataset medium --steps 200000 --seed 0 \
        [--policy DIR] [--root DIR] [--name NAME] [--version 0]
    python -m s4dm_jax.data.collect train-policy --env hopper --seed 0 [--out DIR] \
        [--target-return R | --train-steps N]

Dataset ids are ``s4dm/<env>/<name>-v<version>`` (name defaults to the dataset kind); an
existing id is never overwritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from s4dm_jax.argparsing import ArgumentParser
from s4dm_jax.data.errors import DatasetError
from s4dm_jax.data.minari_io import default_store_root, incomplete_reason, store_env
from s4dm_jax.envs import StepContext, make_env, make_vector_env, run_episodes
from s4dm_jax.envs.make import mujoco_warnings_to_logging
from s4dm_jax.provenance import git_commit, machine_record, process_alive
from s4dm_jax.rl import Policy, ReplayBuffer, SACTrainConfig, split_episodes, train_sac
from s4dm_jax.rl.train import SAC_ENV

ENVS = {
    # short name: (gymnasium id, D4RL ref max score ("expert"), D4RL ref min score)
    "hopper": ("Hopper-v5", 3234.3, -20.272305),
    "halfcheetah": ("HalfCheetah-v5", 12135.0, -280.178953),
    "walker2d": ("Walker2d-v5", 4592.3, 1.629008),
}
KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
MEDIUM_FRACTION = 1.0 / 3.0
NAMESPACE = "s4dm"
# Datasets are written under <store>/<TMP_PREFIX><pid>-*/ and renamed into place when complete.
TMP_PREFIX = ".s4dm-collect-tmp-"


class DatasetExistsError(FileExistsError):
    """The requested dataset id already exists in the store (complete, or left incomplete)."""


class CollectError(ValueError):
    """Bad collect input, found before any rollout; the message says what to change."""


def default_run_dir(env: str, seed: int) -> Path:
    """Where ``--dataset medium`` trains/reuses its SAC run (policy/, replay.npz, log)."""
    base = os.environ.get("S4DM_RUNS_PATH", os.path.join(os.path.expanduser("~"), ".s4dm_jax"))
    return Path(base) / "runs" / f"{env}-medium-sac-s{seed}"


def dataset_id(env: str, name: str, version: int) -> str:
    """``s4dm/<env>/<name>-v<version>``."""
    return f"{NAMESPACE}/{env}/{name}-v{version}"


def store_root(root: str | os.PathLike | None) -> Path:
    """The Minari store root datasets are written to (``root`` None: Minari's default store,
    MINARI_DATASETS_PATH or ~/.minari/datasets)."""
    return Path(root).absolute() if root is not None else default_store_root().absolute()


def store_path(ds_id: str, root: str | os.PathLike | None) -> Path:
    """Directory a dataset id occupies in the store (``root`` None: Minari's default store)."""
    return store_root(root) / ds_id


def check_new_id(ds_id: str, root) -> None:
    """Raise DatasetExistsError if the id already exists (checked before any expensive work);
    a dataset left half-written by an interrupted run is reported as incomplete."""
    path = store_path(ds_id, root)
    if path.exists():
        reason = incomplete_reason(path / "data")
        if reason is not None:
            raise DatasetExistsError(
                f"incomplete dataset '{ds_id}' at {path} ({reason}), left by an interrupted run: "
                "delete it and rerun.")
        raise DatasetExistsError(
            f"dataset '{ds_id}' already exists at {path}; it is never overwritten. Delete that "
            f"directory or choose another --name / --version."
        )


# --------------------------------------------------------------------------- rollouts
def rollout(env_id: str, policy, steps: int, seed: int, *, deterministic: bool = False,
            progress: bool = True, desc: str = "rollout") -> list[dict[str, np.ndarray]]:
    """Roll out ``policy`` (a ``s4dm_jax.rl.Policy``; None = uniform random) for exactly ``steps``
    environment steps in 1000-step episodes; the last episode is cut (truncated) at the budget.
    One env: reset with ``seed`` first, later episodes continue its generator.

    Returns episodes: observations f64 [T+1, obs], actions f32 [T, act], rewards f64 [T],
    terminations bool [T], truncations bool [T].
    """
    envs = make_vector_env(env_id, 1, **SAC_ENV)
    act_dim = envs.single_action_space.shape[0]
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray, ctx: StepContext) -> np.ndarray:
        if policy is None:
            return rng.uniform(-1.0, 1.0, (len(obs), act_dim)).astype(np.float32)
        return policy.act_batch(obs, rng, deterministic)

    try:
        with tqdm(total=steps, desc=desc, disable=not progress, mininterval=1.0) as pbar:
            result = run_episodes(envs, act, seed=seed, steps_per_env=steps, keep=("transitions",),
                                  on_steps=pbar.update)
    finally:
        envs.close()
    return [{**e, "observations": e["observations"].astype(np.float64),
             "actions": e["actions"].astype(np.float32)} for e in result.episodes]


def random_policy_return(env_id: str, episodes: int, seed: int) -> tuple[float, float]:
    """(mean, std) undiscounted return of the uniform random policy over ``episodes`` episodes
    run side by side (episode i resets with seed + i)."""
    envs = make_vector_env(env_id, episodes, **SAC_ENV)
    rng = np.random.default_rng(seed)
    act_dim = envs.single_action_space.shape[0]
    try:
        returns = run_episodes(envs, lambda obs, ctx: rng.uniform(-1.0, 1.0, (episodes, act_dim)),
                               seed=seed, episodes_per_env=1).returns
    finally:
        envs.close()
    return float(np.mean(returns)), float(np.std(returns))


def replay_episodes(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """Episodes of a saved SAC replay buffer (``replay.npz``), in collection order."""
    eps = split_episodes(ReplayBuffer.load(path).arrays())
    for e in eps:
        e["observations"] = e["observations"].astype(np.float64)
        e["rewards"] = e["rewards"].astype(np.float64)
    return eps


# --------------------------------------------------------------------------- minari
@dataclasses.dataclass(frozen=True)
class MinariMeta:
    """What a written dataset says about itself besides its episodes (see `write_minari`)."""

    ref_min_score: float
    ref_max_score: float
    description: str
    extra: dict              # more metadata (the provenance record)
    ref_episodes: int = 100  # episodes behind the reference scores


def write_minari(ds_id: str, episodes, env_id: str, meta: MinariMeta, *, root=None,
                 obs_dtype: str = "float32") -> Path:
    """Write episodes with ``minari.create_dataset_from_buffers``; returns the dataset's path.

    The dataset is written into a temporary store inside the target store root and renamed
    into place only when complete (metadata and provenance included), so an interrupted run
    never leaves a partial dataset under the id. Observations are stored as ``obs_dtype``
    (float32 like D4RL: half the file size of the env's float64 space; the stored
    observation_space is the env's Box with that dtype).
    """
    env = make_env(env_id)
    space = env.observation_space
    obs_space = gym.spaces.Box(space.low.astype(obs_dtype), space.high.astype(obs_dtype),
                               space.shape, dtype=obs_dtype)
    env.close()

    buffers = [
        EpisodeBuffer(
            id=i,
            observations=e["observations"].astype(obs_dtype),
            actions=e["actions"],
            rewards=e["rewards"],
            terminations=e["terminations"],
            truncations=e["truncations"],
            infos={},
        )
        for i, e in enumerate(episodes)
    ]
    final = store_path(ds_id, root)
    check_new_id(ds_id, root)
    store = store_root(root)
    store.mkdir(parents=True, exist_ok=True)
    tmp_store = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=store))
    try:
        # minari makes the env (and eval env) itself: its MuJoCo warnings go to logging too
        with store_env(tmp_store), mujoco_warnings_to_logging():
            ds = minari.create_dataset_from_buffers(
                dataset_id=ds_id,
                buffer=buffers,
                env=env_id,
                eval_env=env_id,
                algorithm_name="SAC behaviour policy, D4RL recipe (s4dm_jax.data.collect)",
                author="s4dm_jax",
                author_email="n/a",
                code_permalink="s4dm_jax/data/collect.py",
                ref_min_score=float(meta.ref_min_score),
                ref_max_score=float(meta.ref_max_score),
                num_episodes_average_score=int(meta.ref_episodes),
                observation_space=obs_space,
                description=meta.description,
            )
            ds.storage.update_metadata(meta.extra)
        _move_into_place(tmp_store, ds_id, final)
    finally:
        shutil.rmtree(tmp_store, ignore_errors=True)
    return final


def _move_into_place(tmp_store: Path, ds_id: str, final: Path) -> None:
    """fsync the finished dataset in ``tmp_store``, copy namespace metadata the target store
    lacks, then rename the dataset folder to ``final`` (atomic on one file system)."""
    written = tmp_store / ds_id
    for folder, _, files in os.walk(written):
        for name in files:
            with open(os.path.join(folder, name), "rb+") as f:
                os.fsync(f.fileno())
    parts = ds_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):  # minari's namespace_metadata.json per namespace
        namespace = "/".join(parts[:depth])
        source = tmp_store / namespace / "namespace_metadata.json"
        target = final.parents[len(parts) - depth] / "namespace_metadata.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_file() and not target.exists():
            shutil.copyfile(source, target)
    try:
        os.rename(written, final)
    except OSError as e:  # another run finished the same id first
        raise DatasetExistsError(f"dataset '{ds_id}' appeared at {final} while this run was "
                                 f"writing it ({e}); it was not overwritten") from e


def remove_stale_temporaries(root) -> list[Path]:
    """Delete temporary stores left in the store root by collect runs that were killed (their
    process no longer exists); returns what was removed."""
    store = store_root(root)
    removed = []
    if not store.is_dir():
        return removed
    for path in store.glob(f"{TMP_PREFIX}*"):
        pid = path.name[len(TMP_PREFIX):].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _episode_stats(episodes) -> dict:
    rets = np.asarray([float(np.sum(e["rewards"])) for e in episodes])
    lens = np.asarray([len(e["rewards"]) for e in episodes])
    return {"steps": int(lens.sum()), "episodes": len(episodes),
            "return_mean": float(rets.mean()), "return_std": float(rets.std()),
            "return_min": float(rets.min()), "return_max": float(rets.max())}


def _policy_desc(path, meta: dict) -> dict:
    keys = ("env_id", "seed", "env_steps", "eval_return", "eval_mode", "command",
            "reached_target", "target_return", "machine")
    return {"path": str(path), **{k: meta[k] for k in keys if k in meta}}


def load_policy(path, env: str, flag: str):
    """The saved policy at ``path`` (``flag`` names the CLI option), checked to exist, load,
    and fit the env's observation/action sizes (and id, when the policy records one)."""
    env_id = ENVS[env][0]
    path = Path(path)
    if not (path / "policy.json").is_file():
        what = "does not exist" if not path.exists() else "holds no policy.json"
        raise CollectError(
            f"{flag} {path} {what}: pass the directory of a saved policy (policy.json + actor/), "
            f"e.g. s4dm_jax/assets/policies/{env}-medium-sac-s0/policy, or train one with "
            f"`python -m s4dm_jax.data.collect train-policy --env {env}`")
    try:
        policy = Policy.load(path)
    except Exception as e:  # orbax / json / flax raise many types for a damaged policy
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CollectError(f"{flag} {path} cannot be loaded as a saved policy "
                           f"({type(e).__name__}: {first}); pass another policy directory") from e
    probe = make_env(env_id)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    recorded = policy.meta.get("env_id")
    if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim) or (recorded and recorded != env_id):
        raise CollectError(
            f"{flag} {path} is a policy for {recorded or 'another environment'} (observations "
            f"{policy.obs_dim}, actions {policy.act_dim}) but --env {env} is {env_id} "
            f"(observations {obs_dim}, actions {act_dim}); pass a policy trained on {env_id}")
    return policy


# --------------------------------------------------------------------------- commands
def train_policy(env: str, out: str | os.PathLike, run: SACTrainConfig, *, command: str = "",
                 progress: bool = True) -> Path:
    """Run SAC (``run``: seed, budget, target return...) and save ``out/policy`` (orbax actor +
    policy.json), ``out/replay.npz`` (every transition, for medium-replay) and
    ``out/train_log.json``. Returns ``out``."""
    env_id, seed, target_return = ENVS[env][0], run.seed, run.target_return
    out = Path(out).absolute()
    if (out / "policy").exists():
        raise FileExistsError(f"{out} already holds a trained policy; delete it or pass --out")
    out.mkdir(parents=True, exist_ok=True)
    res = train_sac(env_id, run, progress=progress)
    res.policy.meta["command"] = command
    # SAC's result depends on the host (docs/datasets.md)
    res.policy.meta["machine"] = machine_record()
    res.policy.save(out / "policy")
    res.buffer.save(out / "replay.npz")
    log = {"command": command, "env_id": env_id, "seed": seed, "env_steps": res.env_steps,
           "eval_return": res.eval_return, "reached_target": res.reached_target,
           "target_return": target_return, "wall_time_s": res.wall_time_s,
           "history": res.history}
    (out / "train_log.json").write_text(json.dumps(log, indent=2))
    print(f"SAC {env_id}: {res.env_steps} steps, eval return {res.eval_return:.1f} "
          f"(target {target_return}), {res.wall_time_s:.0f} s -> {out}", flush=True)
    return out


# Which path options each dataset kind reads.
_USES = {"random": (), "medium": ("--policy", "--run-dir"),
         "medium-replay": ("--replay", "--run-dir"), "expert": ("--policy",),
         "medium-expert": ("--policy", "--expert-policy", "--run-dir")}


def check_ints(*checks: tuple[str, int, int]) -> None:
    """CollectError for the first (flag, value, lowest allowed) whose value is not an integer
    >= lowest."""
    for flag, value, low in checks:
        if not isinstance(value, int) or value < low:
            raise CollectError(f"{flag} must be an integer >= {low}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset to create: the options of the `collect` command (same names and defaults;
    see its --help)."""

    env: str                          # a key of ENVS
    kind: str                         # one of KINDS
    steps: int = 100_000              # medium-expert: half each; medium-replay: not used
    seed: int = 0
    policy: str | None = None         # medium / expert / the medium half of medium-expert
    expert_policy: str | None = None  # medium-expert
    replay: str | None = None         # medium-replay: a SAC run's replay.npz
    run_dir: str | None = None        # the SAC run medium/medium-replay train or reuse
    root: str | None = None           # Minari store root (None: Minari's default)
    name: str | None = None           # None: the kind
    version: int = 0
    deterministic: bool = False       # roll out tanh(mean) instead of sampling
    ref_episodes: int = 100           # random-policy episodes measuring ref_min_score
    sac_max_steps: int = 1_000_000
    sac_start_steps: int = 5_000
    obs_dtype: str = "float32"

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> DatasetSpec:
        """The spec of parsed `collect` options."""
        return cls(**{f.name: getattr(a, "dataset" if f.name == "kind" else f.name)
                      for f in dataclasses.fields(cls)})

    @property
    def dataset_id(self) -> str:
        """``s4dm/<env>/<name or kind>-v<version>``."""
        return dataset_id(self.env, self.name or self.kind, self.version)

    @property
    def paths(self) -> dict[str, str | None]:
        """The path options by their flag."""
        return {"--policy": self.policy, "--expert-policy": self.expert_policy,
                "--replay": self.replay, "--run-dir": self.run_dir}


def check_request(spec: DatasetSpec) -> None:
    """CollectError for an unknown env/kind, a bad size, name or version, or a path option the
    kind does not use (checked before anything runs)."""
    env, kind, name = spec.env, spec.kind, spec.name
    if env not in ENVS:
        raise CollectError(f"unknown --env {env!r}; choose from {sorted(ENVS)}")
    if kind not in KINDS:
        raise CollectError(f"unknown --dataset {kind!r}; choose from {KINDS}")
    least = 2 if kind == "medium-expert" else 1
    check_ints(("--steps", spec.steps, least), ("--seed", spec.seed, 0),
               ("--ref-episodes", spec.ref_episodes, 1), ("--version", spec.version, 0),
               ("--sac-max-steps", spec.sac_max_steps, 1),
               ("--sac-start-steps", spec.sac_start_steps, 0))
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise CollectError(f"--name {name!r} may only hold letters, digits, '_', '.' and '-'")
    for flag, value in spec.paths.items():
        if value and flag not in _USES[kind]:
            raise CollectError(f"{flag} is not used by --dataset {kind} (it reads "
                               f"{', '.join(_USES[kind]) or 'no policy'}); drop it")


def create_dataset(spec: DatasetSpec, *, command: str = "", progress: bool = True) -> dict:
    """Create the dataset `spec` describes; returns a summary dict (id, path, stats, refs,
    timings). `command` is recorded as provenance.

    Every input (env, kind, sizes, the id, the policy/replay paths and the policies' env) is
    checked before any rollout: raises CollectError or DatasetExistsError. The dataset appears
    under its id only once completely written.
    """
    check_request(spec)
    env, kind, steps, seed, root = spec.env, spec.kind, spec.steps, spec.seed, spec.root
    policy, expert_policy, replay = spec.policy, spec.expert_policy, spec.replay
    deterministic, ref_episodes = spec.deterministic, spec.ref_episodes
    env_id, ref_max, d4rl_min = ENVS[env]
    ds_id = spec.dataset_id
    check_new_id(ds_id, root)
    if kind in ("expert", "medium-expert"):
        flag, exp_path = (("--expert-policy", expert_policy) if kind == "medium-expert"
                          else ("--policy", policy))
        if not exp_path:
            raise CollectError(
                f"--dataset {kind} needs {flag} DIR: train one with `python -m "
                f"s4dm_jax.data.collect train-policy --env {env} --train-steps 1000000`")
        expert = load_policy(exp_path, env, flag)
    given = load_policy(policy, env, "--policy") if policy and kind != "expert" else None
    if replay and not Path(replay).is_file():
        raise CollectError(f"--replay {replay} does not exist: pass the replay.npz of a SAC run "
                           "(train-policy writes OUT/replay.npz)")
    for stale in remove_stale_temporaries(root):
        print(f"removed {stale}, a temporary dataset left by a killed collect run", flush=True)
    t0 = time.time()
    provenance: dict = {"kind": kind, "env": env, "env_id": env_id, "seed": seed,
                        "command": command, "rollout_mode": "deterministic" if deterministic
                        else "stochastic"}

    def ensure_run() -> Path:
        rd = Path(spec.run_dir) if spec.run_dir else default_run_dir(env, seed)
        if not (rd / "policy").exists() or not (rd / "replay.npz").exists():
            print(f"no SAC run in {rd}: training one (target return {ref_max / 3:.1f})",
                  flush=True)
            train_policy(env, rd, SACTrainConfig(
                seed=seed, max_steps=spec.sac_max_steps, target_return=ref_max * MEDIUM_FRACTION,
                start_steps=spec.sac_start_steps),
                command=command + "  [SAC run started by this command]", progress=progress)
        return rd

    def behaviour():
        """(path, policy) of the medium behaviour policy: --policy, else the SAC run's."""
        if given is not None:
            return Path(policy), given
        path = ensure_run() / "policy"
        return path, load_policy(path, env, "the SAC run's policy")

    if kind == "random":
        episodes = rollout(env_id, None, steps, seed, progress=progress, desc=ds_id)
        provenance["behavior_policy"] = "uniform random"
    elif kind == "medium":
        pol_path, pol = behaviour()
        provenance["behavior_policy"] = _policy_desc(pol_path, pol.meta)
        episodes = rollout(env_id, pol, steps, seed, deterministic=deterministic,
                           progress=progress, desc=ds_id)
    elif kind == "medium-replay":
        rp = Path(replay) if replay else ensure_run() / "replay.npz"
        episodes = replay_episodes(rp)
        provenance["behavior_policy"] = f"SAC replay buffer {rp} (steps argument not used)"
        meta = rp.parent / "policy" / "policy.json"
        if meta.is_file():
            provenance["sac_run_policy"] = _policy_desc(meta.parent, json.loads(meta.read_text()))
    else:  # expert / medium-expert
        exp_steps = steps if kind == "expert" else steps - steps // 2
        episodes = rollout(env_id, expert, exp_steps, seed + 1, deterministic=deterministic,
                           progress=progress, desc=ds_id)
        provenance["expert_policy"] = _policy_desc(exp_path, expert.meta)
        if kind == "medium-expert":
            pol_path, pol = behaviour()
            provenance["behavior_policy"] = _policy_desc(pol_path, pol.meta)
            med = rollout(env_id, pol, steps // 2, seed, deterministic=deterministic,
                          progress=progress, desc=ds_id)
            episodes = med + episodes
    t_roll = time.time() - t0

    ref_min, ref_min_std = random_policy_return(env_id, ref_episodes, seed=1_000_000 + seed)
    stats = _episode_stats(episodes)
    provenance.update({
        "ref_min_score_source": f"uniform random policy, mean of {ref_episodes} episodes "
                                f"(std {ref_min_std:.2f})",
        "ref_max_score_source": "D4RL reference max score (d4rl/infos.py) used as 'expert'; "
                                "no expert was trained here",
        "d4rl_ref_min_score": d4rl_min, "d4rl_ref_max_score": ref_max,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_record(), "git_commit": git_commit(),
        **{f"dataset_{k}": v for k, v in stats.items()},
    })
    description = (
        f"D4RL-recipe '{kind}' dataset for {env_id} generated by s4dm_jax. "
        f"Command: {command} (seed {seed}). ref_max_score = D4RL expert reference "
        f"{ref_max}; ref_min_score = measured uniform-random return."
    )
    t1 = time.time()
    path = write_minari(ds_id, episodes, env_id,
                        MinariMeta(ref_min, ref_max, description, {"s4dm_provenance": provenance},
                                   ref_episodes), root=root, obs_dtype=spec.obs_dtype)
    summary = {"dataset_id": ds_id, "path": str(path), **stats,
               "ref_min_score": ref_min, "ref_max_score": ref_max,
               "normalized_mean": 100 * (stats["return_mean"] - ref_min) / (ref_max - ref_min),
               "rollout_time_s": t_roll, "write_time_s": time.time() - t1,
               "wall_time_s": time.time() - t0}
    print(json.dumps(summary, indent=2), flush=True)
    return summary


# --------------------------------------------------------------------------- CLI
# `s4dm-jax collect` and `s4dm-jax train-policy` (s4dm_jax.main) register these two commands;
# `python -m s4dm_jax.data.collect [train-policy] ...` is the older spelling of the same.
COMMANDS = ("collect", "train-policy")
# Errors of bad input the commands report in one line (no traceback).
INPUT_ERRORS = (CollectError, DatasetExistsError, FileExistsError, DatasetError)


def _add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True, choices=sorted(ENVS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def add_collect_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `collect` (create one dataset)."""
    _add_common_arguments(p)
    p.add_argument("--dataset", required=True, choices=KINDS, help="dataset kind (recipe)")
    p.add_argument("--steps", type=int, default=100_000,
                   help="transitions to collect (medium-expert: half each; medium-replay: "
                        "ignored, the whole replay buffer is used). D4RL used 1000000.")
    p.add_argument("--policy", default=None,
                   help="saved policy dir (medium / expert / medium part of medium-expert); "
                        "medium without it trains SAC into --run-dir (or reuses that run)")
    p.add_argument("--expert-policy", default=None, help="expert policy dir (medium-expert)")
    p.add_argument("--replay", default=None, help="replay.npz of a SAC run (medium-replay)")
    p.add_argument("--run-dir", default=None,
                   help="SAC run dir for medium/medium-replay without --policy/--replay "
                        "(default ~/.s4dm_jax/runs/<env>-medium-sac-s<seed>)")
    p.add_argument("--root", default=None,
                   help="Minari store root (default: MINARI_DATASETS_PATH or ~/.minari/datasets)")
    p.add_argument("--name", default=None, help="dataset name (default: the kind)")
    p.add_argument("--version", type=int, default=0)
    p.add_argument("--deterministic", action="store_true",
                   help="roll out tanh(mean) instead of sampling (D4RL sampled)")
    p.add_argument("--ref-episodes", type=int, default=100,
                   help="random-policy episodes to measure ref_min_score")
    p.add_argument("--obs-dtype", default="float32", choices=("float32", "float64"),
                   help="stored observation dtype (float32 as D4RL; float64 = env's own)")
    p.add_argument("--sac-max-steps", type=int, default=1_000_000)
    p.add_argument("--sac-start-steps", type=int, default=5_000)


def add_train_policy_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `train-policy` (a SAC behaviour policy alone)."""
    _add_common_arguments(p)
    p.add_argument("--out", default=None,
                   help="run dir (default ~/.s4dm_jax/runs/<env>-medium-sac-s<seed>)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-return", type=float, default=None,
                   help="stop when the eval return reaches this (default: D4RL max / 3)")
    g.add_argument("--train-steps", type=int, default=None,
                   help="fixed budget, no early stop (use for an expert policy)")
    p.add_argument("--max-steps", type=int, default=1_000_000,
                   help="step cap when stopping at a target return")
    p.add_argument("--start-steps", type=int, default=5_000, help="random warm-up steps")
    p.add_argument("--update-every", type=int, default=50,
                   help="env steps between jitted lax.scan blocks of as many updates")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=10)


COLLECT_HELP = ("Create a D4RL-recipe Minari dataset s4dm/<env>/<name>-v<version> (never "
                "overwrites an existing id).")
TRAIN_POLICY_HELP = ("Train a SAC behaviour policy; saves OUT/policy, OUT/replay.npz, "
                     "OUT/train_log.json. Default: stop at 1/3 of the D4RL expert return "
                     "(medium). --train-steps N: train N steps with no early stop (expert).")


def add_commands(subparsers) -> None:
    """Register `collect` and `train-policy` on an argparse subparsers object."""
    add_collect_arguments(subparsers.add_parser(
        "collect", help=COLLECT_HELP, description=COLLECT_HELP))
    add_train_policy_arguments(subparsers.add_parser(
        "train-policy", help=TRAIN_POLICY_HELP, description=TRAIN_POLICY_HELP))


def run_command(a: argparse.Namespace, command: str) -> dict | Path:
    """Run the parsed `collect` / `train-policy` command `a.command`; `command` is the command
    line recorded as provenance. Raises one of INPUT_ERRORS for bad input."""
    if a.command == "train-policy":
        check_ints(("--seed", a.seed, 0), ("--max-steps", a.max_steps, 1),
                   ("--start-steps", a.start_steps, 0), ("--update-every", a.update_every, 1),
                   ("--eval-every", a.eval_every, 1), ("--eval-episodes", a.eval_episodes, 1),
                   *([("--train-steps", a.train_steps, 1)] if a.train_steps is not None else []))
        if a.train_steps is not None:
            target, max_steps = None, a.train_steps
        else:
            target = a.target_return if a.target_return is not None else (
                ENVS[a.env][1] * MEDIUM_FRACTION)
            max_steps = a.max_steps
        out = a.out or default_run_dir(a.env, a.seed)
        run = SACTrainConfig(seed=a.seed, max_steps=max_steps, target_return=target,
                             start_steps=a.start_steps, update_every=a.update_every,
                             eval_every=a.eval_every, eval_episodes=a.eval_episodes)
        return train_policy(a.env, out, run, command=command, progress=not a.no_progress)
    return create_dataset(DatasetSpec.from_args(a), command=command, progress=not a.no_progress)


def main(argv: list[str] | None = None) -> dict | Path:
    """`python -m s4dm_jax.data.collect [collect|train-policy] ...`: the older spelling of
    `s4dm-jax collect ...` (`s4dm-jax train-policy ...` when the first word is train-policy),
    parsed by the same parser; without a command word, `collect` is meant. Returns the dataset
    summary (or the policy's run dir); raises one of INPUT_ERRORS for bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m s4dm_jax.data.collect " + shlex.join(argv)
    parser = ArgumentParser(prog="python -m s4dm_jax.data.collect",
                            description="The older spelling of `s4dm-jax collect` / `s4dm-jax "
                                        "train-policy`; without a command, collect is meant.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    words = argv if argv[:1] and argv[0] in (*COMMANDS, "-h", "--help") else ["collect", *argv]
    return run_command(parser.parse_args(words), command)


if __name__ == "__main__":
    try:
        main()
    except INPUT_ERRORS as err:
        sys.exit(f"error: {err}")
