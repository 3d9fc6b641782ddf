"""Training loop: vmapped seeds, data-parallel mesh, orbax resume, TensorBoard, evaluation.

The whole inner loop (batch sampling + forward/backward + optimiser update) for
`config.steps_per_call` steps is one jitted `lax.scan`, vmapped over seeds. Train state leaves
carry a leading seed axis S. The device mesh has axes ("seed", "data"): the state is sharded over
"seed" (replicated when that axis has one device) and each batch is split over "data".
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from s4dm_jax import models as models_lib
from s4dm_jax.data import SequenceSampler, load_dataset
from s4dm_jax.data.sampling import TOP_FRACTION_BY, sample_batch
from s4dm_jax.nn import ssm_param_mask
from s4dm_jax.train import checkpoint
from s4dm_jax.train.optim import make_optimizer, warmup_schedule


class ConfigError(ValueError):
    """The experiment config is invalid (the message names the field and how to fix it)."""


class TrainingDivergedError(RuntimeError):
    """Loss or gradients became NaN/inf; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- mesh and state

def make_mesh(seed_axis_devices: int = 1, devices=None) -> Mesh:
    """("seed", "data") mesh over `devices` (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) % seed_axis_devices:
        raise ConfigError(
            f"config.seed_axis_devices={seed_axis_devices} does not divide the {len(devices)} "
            "available devices"
        )
    grid = np.array(devices).reshape(seed_axis_devices, len(devices) // seed_axis_devices)
    return Mesh(grid, ("seed", "data"), axis_types=(AxisType.Auto, AxisType.Auto))


def seed_keys(base_seed: int, num_seeds: int) -> jax.Array:
    """[S, 2] PRNG keys; seed i of a multi-seed run is exactly the run with seed base+i."""
    return jnp.stack([jax.random.PRNGKey(base_seed + i) for i in range(num_seeds)])


def init_state(model, optimizer, keys: jax.Array) -> dict:
    """Seed-stacked train state {step, params, opt_state, key} from keys [S, 2]."""
    def one(key):
        init_key, train_key = jax.random.split(key)
        params = model.init(init_key)
        return {"step": jnp.zeros((), jnp.int32), "params": params,
                "opt_state": optimizer.init(params), "key": train_key}

    return jax.jit(jax.vmap(one))(keys)


def make_train_chunk(model, optimizer, *, batch_size: int, context_len: int, num_steps: int,
                     mesh: Mesh, episode_start_windows: bool = False):
    """Jitted fn(state, data_arrays) -> (state, metrics[S, num_steps]) running `num_steps` steps."""
    data_sharding = NamedSharding(mesh, P("data"))

    def train_step(state, arrays):
        key, sample_key, dropout_key = jax.random.split(state["key"], 3)
        batch = sample_batch(arrays, sample_key, batch_size, context_len,
                             from_episode_start=episode_start_windows)
        batch = jax.lax.with_sharding_constraint(batch, data_sharding)

        def loss_fn(params):
            # whole-episode windows: per-window average, so every transition weighs the same
            # (see data.sampling)
            return model.loss(params, batch, dropout_key, train=True,
                              per_window=episode_start_windows)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        new_state = {"step": state["step"] + 1,
                     "params": optax.apply_updates(state["params"], updates),
                     "opt_state": opt_state, "key": key}
        return new_state, {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}

    def chunk(state, arrays):
        return jax.lax.scan(lambda s, _: train_step(s, arrays), state, None, length=num_steps)

    vmapped = jax.vmap(chunk, in_axes=(0, None), spmd_axis_name="seed")
    return jax.jit(vmapped)


# ----------------------------------------------------------------------------- experiment

def build(config):
    """Dataset, sampler and model for `config` (shared by training and stand-alone evaluation)."""
    dataset = load_dataset(
        config.dataset, download=config.download, env_id=config.env_id or None,
        ref_min_score=config.ref_min_score, ref_max_score=config.ref_max_score,
    )
    model_kwargs = dict(config.model.to_dict())
    name = model_kwargs.pop("name")
    if name not in models_lib.DEFAULTS:
        raise ConfigError(f"config.model.name={name!r} is not one of {sorted(models_lib.DEFAULTS)}")
    unknown = sorted(set(model_kwargs) - set(models_lib.DEFAULTS[name]))
    if unknown:
        raise ConfigError(f"config.model has fields {unknown} that model {name!r} does not take; "
                          f"accepted: {sorted(models_lib.DEFAULTS[name])}")
    try:
        model = models_lib.make_model(name, dataset.obs_dim, dataset.act_dim,
                                      discrete=dataset.discrete, **model_kwargs)
    except ValueError as e:
        raise ConfigError(f"config.model: {e}") from e
    sampler = SequenceSampler(dataset, model.context_len, rtg_scale=config.rtg_scale,
                              top_fraction=config.top_fraction,
                              delayed_reward=config.delayed_reward,
                              top_fraction_by=config.top_fraction_by)
    _validate_training_regime(config, sampler, model)
    return dataset, sampler, model


def _validate_training_regime(config, sampler, model):
    """Whole-episode windows must hold whole episodes, and a model whose inference state spans
    the whole episode must be trained on them (ConfigError before anything is trained)."""
    longest = sampler.longest_episode
    if config.episode_start_windows and model.context_len < longest:
        raise ConfigError(
            f"config.episode_start_windows=True trains on whole episodes, but "
            f"config.model.context_len={model.context_len} is shorter than the longest training "
            f"episode ({longest} steps): its windows would hold only the first "
            f"{model.context_len} steps. Set --config.model.context_len={longest} (or more), "
            "or --config.episode_start_windows=False to train on K-step windows starting "
            "anywhere."
        )
    if model.requires_whole_episode_training and not config.episode_start_windows:
        raise ConfigError(
            f"config.model.inference='recurrent' runs {config.model.name}'s recurrent state over "
            f"the whole episode at evaluation, but config.episode_start_windows=False trains it "
            f"on {model.context_len}-step windows starting anywhere in an episode. Use "
            "--config.model.inference=window (re-run on the last K steps, as trained; the "
            "default), or train on whole episodes: --config.episode_start_windows=True "
            f"--config.model.context_len={longest} (the longest training episode)."
        )


def train_and_evaluate(config, workdir: str, *, show_progress: bool = True) -> dict:
    """Train `config.seeds` seeds, checkpointing to and resuming from `workdir`, then evaluate.

    Writes <workdir>/{checkpoints/, tensorboard/, results.json, results.md, curves.png}.
    Returns the results dict.
    """
    from s4dm_jax.evaluate import report
    from s4dm_jax.evaluate.rollout import render_episode, rollout

    _validate(config)
    workdir = os.path.abspath(workdir)
    dataset, sampler, model = build(config)  # fails before anything is written
    checkpoint.check_run_config(workdir, config)

    mesh = make_mesh(config.seed_axis_devices)
    data_axis = mesh.shape["data"]
    if config.batch_size % data_axis:
        raise ConfigError(f"config.batch_size={config.batch_size} must be divisible by the "
                         f"{data_axis} devices of the data axis")
    if config.seeds % mesh.shape["seed"]:
        raise ConfigError(f"config.seeds={config.seeds} must be divisible by "
                         f"config.seed_axis_devices={mesh.shape['seed']}")

    probe = model.init(jax.random.PRNGKey(0))
    mask = ssm_param_mask(probe)
    has_ssm = any(jax.tree_util.tree_leaves(mask))
    optimizer = make_optimizer(config.optim, mask if has_ssm else None)
    num_params = models_lib.param_count(probe)
    del probe

    state_sharding = NamedSharding(mesh, P("seed"))
    state = init_state(model, optimizer, seed_keys(config.seed, config.seeds))
    state = jax.device_put(state, state_sharding)
    arrays = jax.device_put(sampler.arrays, NamedSharding(mesh, P()))

    manager = checkpoint.open_manager(workdir, config.keep_checkpoints)
    state, start_step = checkpoint.restore_latest(manager, state)
    if start_step:
        print(f"Resuming from checkpoint at step {start_step} in {workdir}/checkpoints")

    from tensorboardX import SummaryWriter

    writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    lr_schedule = warmup_schedule(config.optim.learning_rate, config.optim.warmup_steps)
    history = _load_history(workdir, start_step)
    train_time = 0.0
    try:
        state, train_time = _train_loop(config, model, optimizer, mesh, state, arrays, start_step,
                                        manager, writer, lr_schedule, history, workdir,
                                        show_progress, sampler, dataset)
    finally:
        manager.wait_until_finished()
        manager.close()
        _save_history(workdir, history)

    eval_start = time.perf_counter()
    result = rollout(model, state["params"], env_id=dataset.env_id, state_mean=sampler.state_mean,
                     state_std=sampler.state_std, rtg_scale=config.rtg_scale,
                     targets=config.eval.target_returns, episodes=config.eval.episodes,
                     max_steps=config.eval.max_episode_steps,
                     delayed_reward=config.delayed_reward, seed=config.seed + 10_000,
                     episode_start_windows=config.episode_start_windows)
    _log_eval(writer, result, dataset, int(config.num_steps))
    writer.close()
    gif = None
    if config.eval.gif:
        gif = os.path.join(workdir, "eval.gif")
        try:
            one_seed = jax.tree_util.tree_map(lambda x: x[0], state["params"])
            render_episode(model, one_seed, gif, env_id=dataset.env_id,
                           state_mean=sampler.state_mean, state_std=sampler.state_std,
                           rtg_scale=config.rtg_scale, target=config.eval.target_returns[0],
                           max_steps=config.eval.max_episode_steps, seed=config.seed,
                           episode_start_windows=config.episode_start_windows)
        except Exception as e:  # rendering needs a GL backend; the results stand without it
            print(f"warning: could not render eval.gif ({type(e).__name__}: {e}); "
                  "set MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU) to enable rendering")
            gif = None
    results = report.build_results(
        config, dataset, model, num_params, result, history,
        wall_times={"train_s": train_time, "eval_s": time.perf_counter() - eval_start},
        devices=[str(d) for d in mesh.devices.flat], gif=gif,
    )
    report.write_all(workdir, results, history)
    return results


def _train_loop(config, model, optimizer, mesh, state, arrays, start_step, manager, writer,
                lr_schedule, history, workdir, show_progress, sampler, dataset):
    from tqdm.auto import tqdm

    from s4dm_jax.evaluate.rollout import rollout

    total = int(config.num_steps)
    chunk = max(1, min(int(config.steps_per_call), total))
    compiled = {}

    def chunk_fn(n):
        if n not in compiled:
            compiled[n] = make_train_chunk(model, optimizer, batch_size=config.batch_size,
                                           context_len=model.context_len, num_steps=n, mesh=mesh,
                                           episode_start_windows=config.episode_start_windows)
        return compiled[n]

    step, last_saved, elapsed = start_step, start_step, 0.0
    bar = tqdm(total=total, initial=step, desc=f"train {config.model.name} x{config.seeds} seeds",
               unit="step", disable=not show_progress, dynamic_ncols=True)
    while step < total:
        n = min(chunk, total - step)
        t0 = time.perf_counter()
        new_state, metrics = chunk_fn(n)(state, arrays)
        metrics = jax.device_get(metrics)  # also waits for the chunk to finish
        dt = time.perf_counter() - t0
        bad = ~(np.isfinite(metrics["loss"]) & np.isfinite(metrics["grad_norm"]))
        if bad.any():
            seed_idx, step_idx = np.argwhere(bad)[0]
            raise TrainingDivergedError(
                f"non-finite loss or gradient at step {step + step_idx + 1} "
                f"(seed {config.seed + seed_idx}); training stopped. The last good checkpoint "
                f"(step {last_saved}) is kept in {workdir}/checkpoints. Try a lower "
                "--config.optim.learning_rate / ssm_learning_rate or a smaller grad_clip."
            )
        state = new_state
        prev, step = step, step + n
        elapsed += dt
        bar.update(n)
        bar.set_postfix(loss=f"{metrics['loss'][:, -1].mean():.4f}")
        if _crossed(prev, step, config.log_every) or step == total:
            _log_train(writer, history, metrics, step, config, lr_schedule(step - 1), n / dt)
        if config.eval.every and (_crossed(prev, step, config.eval.every)) and step < total:
            result = rollout(model, state["params"], env_id=dataset.env_id,
                             state_mean=sampler.state_mean, state_std=sampler.state_std,
                             rtg_scale=config.rtg_scale, targets=config.eval.target_returns,
                             episodes=config.eval.episodes,
                             max_steps=config.eval.max_episode_steps,
                             delayed_reward=config.delayed_reward, seed=config.seed + 10_000,
                             episode_start_windows=config.episode_start_windows)
            _log_eval(writer, result, dataset, step)
        if _crossed(prev, step, config.checkpoint_every) or step == total:
            checkpoint.save(manager, step, state)
            last_saved = step
    bar.close()
    return state, elapsed


def _crossed(prev: int, now: int, every: int) -> bool:
    return every > 0 and now // every > prev // every


def _log_train(writer, history, metrics, step, config, lr, steps_per_s):
    loss = np.asarray(metrics["loss"])[:, -1]
    grad_norm = np.asarray(metrics["grad_norm"])[:, -1]
    writer.add_scalar("train/loss", float(loss.mean()), step)
    writer.add_scalar("train/grad_norm", float(grad_norm.mean()), step)
    writer.add_scalar("train/learning_rate", float(lr), step)
    writer.add_scalar("train/steps_per_s", float(steps_per_s), step)
    for i, v in enumerate(loss):
        writer.add_scalar(f"train/loss_seed{config.seed + i}", float(v), step)
    history.append({"step": int(step), "loss": loss.tolist(), "grad_norm": grad_norm.tolist(),
                    "steps_per_s": float(steps_per_s)})


def _log_eval(writer, result, dataset, step):
    for ti, target in enumerate(result.targets):
        per_seed = result.returns[:, ti].mean(axis=-1)
        writer.add_scalar(f"eval/return_target{target:g}", float(per_seed.mean()), step)
        for si, r in enumerate(per_seed):
            writer.add_scalar(f"eval/return_target{target:g}_seed{si}", float(r), step)
        if dataset.ref_min_score is not None and dataset.ref_max_score is not None:
            writer.add_scalar(f"eval/normalized_target{target:g}",
                              float(dataset.normalized_score(per_seed).mean()), step)
    writer.flush()


def _history_path(workdir):
    return os.path.join(workdir, "train_history.json")


def _load_history(workdir, start_step):
    path = _history_path(workdir)
    if start_step and os.path.exists(path):
        with open(path) as f:
            return [h for h in json.load(f) if h["step"] <= start_step]
    return []


def _save_history(workdir, history):
    tmp = _history_path(workdir) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(history, f)
    os.replace(tmp, _history_path(workdir))


def _validate(config):
    checks = [
        (config.seeds >= 1, "config.seeds must be >= 1"),
        (config.batch_size >= 1, "config.batch_size must be >= 1"),
        (config.num_steps >= 1, "config.num_steps must be >= 1"),
        (config.steps_per_call >= 1, "config.steps_per_call must be >= 1"),
        (config.rtg_scale > 0, "config.rtg_scale must be > 0"),
        (0.0 < config.top_fraction <= 1.0, "config.top_fraction must be in (0, 1]"),
        (config.top_fraction_by in TOP_FRACTION_BY,
         f"config.top_fraction_by must be one of {TOP_FRACTION_BY}"),
        (config.eval.episodes >= 1, "config.eval.episodes must be >= 1"),
        (len(config.eval.target_returns) >= 1, "config.eval.target_returns must not be empty"),
        (math.isfinite(config.optim.learning_rate) and config.optim.learning_rate > 0,
         "config.optim.learning_rate must be a positive number"),
        ("name" in config.model, "config.model.name must be set (s4dm, dt, mamba or bc)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


__all__ = ["ConfigError", "TrainingDivergedError", "build", "init_state", "make_mesh",
           "make_train_chunk", "seed_keys", "train_and_evaluate"]
