"""Training loop: vmapped seeds, data-parallel mesh, orbax resume, TensorBoard, evaluation.

The whole inner loop (batch sampling + forward/backward + optimiser update) for a chunk of up
to `config.steps_per_call` steps is one compiled loop, vmapped over seeds; chunk lengths adapt
to the measured step time so the progress bar moves every `config.progress_every_s` seconds.
Train state leaves carry a leading seed axis S. The device mesh has axes ("seed", "data"): the
state is sharded over "seed" (replicated when that axis has one device) and each batch is split
over "data".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from s4dm_jax import models as models_lib
from s4dm_jax.data import DatasetError, SequenceSampler, load_dataset
from s4dm_jax.data.sampling import TOP_FRACTION_BY, sample_batch
from s4dm_jax.evaluate import consistency, report
from s4dm_jax.evaluate.rollout import EvalSettings, check_eval_env, render_episode, rollout
from s4dm_jax.nn import ssm_param_mask
from s4dm_jax.train import checkpoint
from s4dm_jax.train.history import HistoryWriter, truncate_history
from s4dm_jax.train.optim import VMAPPABLE, make_optimizer, warmup_schedule
from s4dm_jax.train.stop_signals import StopSignals, TrainingInterrupted
from s4dm_jax.train.watchdog import Watchdog
from s4dm_jax.train.workdir_lock import WorkdirLock


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


def trial_table(config) -> list[dict]:
    """The models one run trains side by side (the train state's leading axis S): for every
    combination of the vmapped optimiser values in config.sweep (an empty list keeps
    config.optim's value), config.seeds seeds (seeds vary fastest). Each trial:
    {"seed", "learning_rate", "ssm_learning_rate", "weight_decay"}."""
    grids = [list(config.sweep[k] or []) or [config.optim[k]] for k in VMAPPABLE]
    return [{"seed": int(config.seed) + i, **{k: float(v) for k, v in zip(VMAPPABLE, combo,
                                                                          strict=True)}}
            for combo in itertools.product(*grids) for i in range(int(config.seeds))]


def trial_inputs(trials: list[dict]) -> tuple[jax.Array, dict]:
    """PRNG keys [S, 2] and the vmapped optimiser values {name: [S]} of a trial table."""
    keys = jnp.stack([jax.random.PRNGKey(t["seed"]) for t in trials])
    return keys, {k: jnp.asarray([t[k] for t in trials], jnp.float32) for k in VMAPPABLE}


def init_state(model, optimizer, keys: jax.Array, hparams: dict | None = None,
               make_optimizer_fn=None) -> dict:
    """Trial-stacked train state {step, params, opt_state, key} from keys [S, 2].

    With `hparams` ({name: [S]}) and `make_optimizer_fn(**values) -> optimizer`, trial i's
    optimiser state holds its own values (injected hyperparameters), so one vmapped program
    trains S different learning rates / weight decays.
    """
    def one(key, hp):
        init_key, train_key = jax.random.split(key)
        params = model.init(init_key)
        opt = optimizer if hp is None else make_optimizer_fn(**hp)
        return {"step": jnp.zeros((), jnp.int32), "params": params,
                "opt_state": opt.init(params), "key": train_key}

    return jax.jit(jax.vmap(one))(keys, hparams)


def init_run_state(config, model, make_opt=None) -> dict:
    """The train state a run of `config` starts from (and its checkpoints restore into): one
    entry per trial of `trial_table(config)` (config.seeds seeds x config.sweep values), each
    from its seed's key with its own optimiser values (`init_state`). make_opt: from
    `build_optimizer(config, model)` (None: built here)."""
    make_opt = build_optimizer(config, model)[0] if make_opt is None else make_opt
    keys, hparams = trial_inputs(trial_table(config))
    return init_state(model, make_opt(), keys, hparams, make_opt)


def make_train_chunk(model, optimizer, *, batch_size: int, context_len: int, max_steps: int,
                     mesh: Mesh, episode_start_windows: bool = False):
    """Jitted fn(state, data_arrays, n) -> (state, metrics[S, max_steps]) running n <= max_steps
    steps (n is a traced int: one compiled program serves every chunk length; metric entries
    from n on are zeros).
    """
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

    def chunk(state, arrays, n):
        shapes = jax.eval_shape(train_step, state, arrays)[1]
        buffers = jax.tree_util.tree_map(lambda m: jnp.zeros((max_steps, *m.shape), m.dtype),
                                         shapes)

        def body(i, carry):
            state, buffers = carry
            state, metrics = train_step(state, arrays)
            buffers = jax.tree_util.tree_map(lambda b, m: b.at[i].set(m), buffers, metrics)
            return state, buffers

        return jax.lax.fori_loop(0, jnp.minimum(n, max_steps), body, (state, buffers))

    vmapped = jax.vmap(chunk, in_axes=(0, None, None), spmd_axis_name="seed")

    def run(state, arrays, n):
        if jax.tree_util.tree_leaves(state)[0].shape[0] == 1:
            # one seed: run unvmapped (XLA:CPU runs loops over a vmapped size-1 axis several
            # times slower) and restore the seed axis
            out = chunk(jax.tree_util.tree_map(lambda x: x[0], state), arrays, n)
            return jax.tree_util.tree_map(lambda x: x[None], out)
        return vmapped(state, arrays, n)

    return jax.jit(run)


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
        sampler = SequenceSampler(dataset, model.context_len, rtg_scale=config.rtg_scale,
                                  top_fraction=config.top_fraction,
                                  delayed_reward=config.delayed_reward,
                                  top_fraction_by=config.top_fraction_by)
    except DatasetError:
        raise
    except (ValueError, TypeError) as e:  # a value the model or sampler refuses
        raise ConfigError(f"config.model ({name}) or sampling settings are invalid: {e}") from e
    _validate_training_regime(config, sampler, model)
    return dataset, sampler, model


def build_optimizer(config, model):
    """(make_optimizer_fn(**vmappable values) -> optax optimiser for config.optim, the model's
    parameter count); the SSM parameters (if any) get their own learning rate and no weight
    decay. make_optimizer_fn() is the optimiser with config.optim's values."""
    try:
        probe = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    except (ValueError, TypeError) as e:  # Flax modules check their fields when first set up
        raise ConfigError(f"config.model ({config.model.name}) is invalid: {e}") from e
    mask = ssm_param_mask(probe)
    mask = mask if any(jax.tree_util.tree_leaves(mask)) else None
    return functools.partial(make_optimizer, config.optim, mask), models_lib.param_count(probe)

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


def train_and_evaluate(config, workdir: str, *, show_progress: bool = True,
                       evaluate_only: bool = False, records_dir: str | None = None) -> dict:
    """Train `config.seeds` seeds, checkpointing to and resuming from `workdir`, then evaluate.

    Writes <workdir>/{checkpoints/, tensorboard/, train_history.jsonl, results.json, results.md,
    curves.png}. A workdir whose results.json already holds this config's finished run is not
    trained or evaluated again: its stored results are returned unchanged. A workdir whose
    checkpoints are past config.num_steps or come from another optimiser/model is refused.
    `evaluate_only` evaluates the latest checkpoint as it is (no training), labelled with its
    real step; with `records_dir` its records (results, TensorBoard, run config, eval.gif) go
    there and the workdir's own records are left as they are. Every check runs before anything
    is written. One run at a time holds a workdir (WorkdirBusyError for a second one).
    SIGTERM / SIGINT during training write a checkpoint at the step reached and raise
    TrainingInterrupted. Returns the results dict.
    """
    with contextlib.ExitStack() as held:  # the workdir lock, once the config is checked
        return _train_and_evaluate(config, workdir, held, show_progress=show_progress,
                                   evaluate_only=evaluate_only, records_dir=records_dir)


def _train_and_evaluate(config, workdir: str, held: contextlib.ExitStack, *,
                        show_progress: bool, evaluate_only: bool,
                        records_dir: str | None) -> dict:
    if records_dir is not None and not evaluate_only:
        raise ConfigError("records_dir is for evaluate_only runs: a trained run keeps its "
                          "records beside its checkpoints")
    _validate(config)
    _validate_fields(config)
    workdir = os.path.abspath(workdir)
    dataset, sampler, model = build(config)  # validates the dataset and its environment id
    check_eval_env(dataset.env_id, model.obs_dim)  # evaluation would fail: fail before training
    mesh = make_mesh(config.seed_axis_devices)
    data_axis = mesh.shape["data"]
    if config.batch_size % data_axis:
        raise ConfigError(f"config.batch_size={config.batch_size} must be divisible by the "
                          f"{data_axis} devices of the data axis")
    trials = trial_table(config)
    if len(trials) % mesh.shape["seed"]:
        raise ConfigError(f"the {len(trials)} trials (config.seeds x config.sweep values) must "
                          f"be divisible by config.seed_axis_devices={mesh.shape['seed']}")
    if jax.process_index() == 0:  # a multi-process run holds its workdir once, on process 0
        held.enter_context(WorkdirLock(workdir))
    checkpoint.check_run_config(workdir, config)
    stored = _finished_results(config, workdir, evaluate_only)
    if stored is not None:
        return stored

    make_opt, num_params = build_optimizer(config, model)
    optimizer = make_opt()

    state_sharding = NamedSharding(mesh, P("seed"))
    state = init_run_state(config, model, make_opt)
    # through host values: with jax.distributed every process holds the same values and
    # contributes its devices' shards of the global arrays
    state = jax.device_put(jax.device_get(state), state_sharding)
    arrays = jax.device_put(jax.device_get(sampler.arrays), NamedSharding(mesh, P()))

    manager = checkpoint.open_manager(workdir, config.keep_checkpoints)
    try:
        restored = checkpoint.restore_latest(manager, state, workdir)
    except BaseException:
        manager.close()
        raise
    for message in restored.skipped:
        print(f"warning: {message}")
    state, start_step = restored.state, restored.step
    # Multi-process runs (jax.distributed): all processes train and checkpoint together; the
    # first writes the workdir's records, the others keep theirs in <workdir>/process<i>.
    records = os.path.abspath(records_dir) if records_dir is not None else workdir
    log_dir = records if jax.process_index() == 0 else os.path.join(
        records, f"process{jax.process_index()}")
    checkpoint.write_run_config(log_dir, config)
    history = truncate_history(log_dir, start_step)
    train_s = restored.train_s
    if train_s is None:  # checkpoint metadata without the time: take the record's last entry
        train_s = float(history[-1].get("train_s", 0.0)) if history else 0.0
        print(f"warning: checkpoint step {start_step} does not store its training time; "
              f"train_s continues from the training record ({train_s:.1f} s)")
    if start_step and not evaluate_only:
        print(f"Resuming from checkpoint at step {start_step} in {workdir}/checkpoints")
    warmup, total = int(config.optim.warmup_steps), int(config.num_steps)
    if warmup > total and not evaluate_only:
        print(f"warning: config.optim.warmup_steps={warmup} exceeds config.num_steps={total}: "
              f"the learning rate only reaches {total / warmup:.0%} of "
              f"config.optim.learning_rate={config.optim.learning_rate:g} by the end. Lower "
              "--config.optim.warmup_steps for a short run.")

    # closed on any exit, an interruption or divergence too (an unclosed writer's exit hook
    # fails on Python 3.12: "can't create new thread at interpreter shutdown")
    writer = held.enter_context(contextlib.closing(
        SummaryWriter(os.path.join(log_dir, "tensorboard"))))
    compile_s = 0.0
    try:
        if not evaluate_only:
            run = TrainSession(config, model, optimizer, mesh, arrays, sampler, dataset,
                               manager, writer, history, workdir, log_dir, show_progress)
            state, train_s, compile_s = _train_loop(run, state, start_step, train_s)
    finally:
        manager.wait_until_finished()
        manager.close()
    trained_steps = start_step if evaluate_only else int(config.num_steps)

    eval_start = time.perf_counter()
    state = {"params": _to_host(state["params"])}
    result = _evaluate(config, model, state["params"], sampler, dataset,
                       show_progress=show_progress)
    _log_eval(writer, result, dataset, trained_steps, config)
    writer.close()
    gif = None
    if config.eval.gif:
        gif = os.path.join(records, "eval.gif")
        try:
            one_seed = jax.tree_util.tree_map(lambda x: x[0], state["params"])
            settings = EvalSettings.from_config(config, dataset.env_id, sampler.state_mean,
                                                sampler.state_std)
            render_episode(model, one_seed, gif, settings)  # = seed 0's first evaluated episode
        except Exception as e:  # rendering needs a GL backend; the results stand without it
            print(f"warning: could not render eval.gif ({type(e).__name__}: {e}); "
                  "set MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU) to enable rendering")
            gif = None
    results = report.build_results(config, dataset, result, report.RunRecord(
        num_params=num_params, history=history,
        wall_times={"train_s": train_s, "compile_s": compile_s,
                    "eval_s": time.perf_counter() - eval_start},
        devices=[str(d) for d in mesh.devices.flat], trials=trials, gif=gif,
        trained_steps=trained_steps))
    report.write_all(log_dir, results, history)
    return results


def _evaluate(config, model, params, sampler, dataset, show_progress: bool):
    """Roll out host `params` [S, ...] at config.eval's target returns. Every process evaluates
    its own host copy (multi-process device arrays are not fully addressable); the environment
    seeds are the same at every step of a run, so evaluations during training and the final one
    are comparable."""
    settings = EvalSettings.from_config(config, dataset.env_id, sampler.state_mean,
                                        sampler.state_std)
    consistency.warn_if_step_differs(model, params, sampler)  # step == training call (warning)
    return rollout(model, params, settings, show_progress=show_progress)


def _finished_results(config, workdir: str, evaluate_only: bool) -> dict | None:
    """The stored results when `workdir` holds this config's finished run, else None; raises
    CheckpointError for a rerun that would mislabel or overwrite a result (nothing written)."""
    steps = checkpoint.saved_steps(workdir)
    latest = steps[-1] if steps else 0
    total = int(config.num_steps)
    if evaluate_only:
        if not latest:
            raise checkpoint.CheckpointError(
                f"--evaluate_only: {workdir} has no checkpoint to evaluate; train first (the "
                "same command without --evaluate_only)")
        return None
    if latest > total:
        raise checkpoint.CheckpointError(
            f"{workdir} holds a checkpoint at step {latest}, past config.num_steps={total}: "
            f"evaluating it would report a {latest}-step model as a {total}-step run, and "
            "training cannot go backwards. Nothing was changed. Use --config.num_steps="
            f"{latest} or more (report or continue that run), a new --workdir, or "
            f"--evaluate_only to evaluate the step-{latest} checkpoint as it is (labelled step "
            f"{latest}).")
    stored = report.read_results(workdir)
    if latest != total or stored is None or report.trained_steps_of(stored) != total:
        return None
    # num_steps is compared as the trained step above (an --evaluate_only result may carry
    # another num_steps); every other field must match.
    current = json.loads(json.dumps({**config.to_dict(), "num_steps": None}))
    diffs = checkpoint.config_differences({**stored.get("config", {}), "num_steps": None}, current)
    if diffs:
        raise checkpoint.CheckpointError(
            f"{workdir} holds the finished {total}-step run, evaluated with a different config "
            f"({'; '.join(diffs)}). Its stored results were left unchanged. Rerun with the "
            "stored settings to report them, pass --evaluate_only to evaluate the checkpoint "
            "again with the new settings (rewriting results.json), or use a new --workdir.")
    print(f"{workdir} already holds this finished run (step {total}); reporting its stored "
          "results unchanged (pass --evaluate_only to evaluate the checkpoint again).")
    return stored


@dataclasses.dataclass
class TrainSession:
    """What a training loop works with besides the state: the run's config, model and data,
    its optimiser and mesh, and where it records (workdir: checkpoints; log_dir: history and
    TensorBoard, the workdir itself on process 0)."""

    config: Any
    model: Any
    optimizer: optax.GradientTransformation
    mesh: Mesh
    arrays: dict
    sampler: SequenceSampler
    dataset: Any
    manager: Any
    writer: SummaryWriter
    history: list
    workdir: str
    log_dir: str
    show_progress: bool = True


def _train_loop(run: TrainSession, state, start_step: int, train_s: float):
    """Train from `start_step` to config.num_steps. Returns (state, train_s, compile_s): the
    cumulative training seconds (compilation excluded) and this session's compile seconds."""
    config, model, optimizer, mesh = run.config, run.model, run.optimizer, run.mesh
    arrays, sampler, dataset, manager = run.arrays, run.sampler, run.dataset, run.manager
    writer, history, workdir = run.writer, run.history, run.workdir
    lr_schedule = warmup_schedule(config.optim.learning_rate, config.optim.warmup_steps)
    total = int(config.num_steps)
    max_chunk = max(1, min(int(config.steps_per_call), total))
    boundaries = [b for b in (config.log_every, config.checkpoint_every, config.eval.every) if b]
    step = start_step
    bar = tqdm(total=total, initial=step,
               desc=f"train {config.model.name} x{len(trial_table(config))} trials",
               unit="step", disable=not run.show_progress, dynamic_ncols=True, mininterval=0.5)
    bar.set_postfix_str("compiling the training step...", refresh=True)
    with contextlib.ExitStack() as cleanup:  # undone in reverse order, also on errors
        cleanup.callback(bar.close)
        watchdog = Watchdog(write=tqdm.write)  # a hang must not be silent
        cleanup.callback(watchdog.close)
        t0 = time.perf_counter()
        fn = make_train_chunk(model, optimizer, batch_size=config.batch_size,
                              context_len=model.context_len, max_steps=max_chunk, mesh=mesh,
                              episode_start_windows=config.episode_start_windows)
        with watchdog.phase("compilation of the training step"):  # compile time is not train time
            fn = fn.lower(state, arrays, jnp.int32(max_chunk)).compile()
        compile_s = time.perf_counter() - t0
        bar.reset(total=total)  # the bar's rate and ETA start after compilation
        bar.initial = bar.n = bar.last_print_n = step
        n_next = 1  # the first chunk is one step long: it measures the step time

        record = HistoryWriter(run.log_dir)
        cleanup.callback(record.close)
        stop = StopSignals().install()
        cleanup.callback(stop.restore)
        while step < total:
            # Chunks end on every log/checkpoint/eval boundary (so records do not depend on the
            # chunk lengths) and last about config.progress_every_s (the bar moves).
            n = min(n_next, total - step, *(b - step % b for b in boundaries))
            t0 = time.perf_counter()
            with watchdog.phase(f"training chunk of {n} steps from step {step}"):
                new_state, metrics = fn(state, arrays, jnp.int32(n))
                metrics = {k: v[:, :n] for k, v in _to_host(metrics).items()}
            dt = time.perf_counter() - t0
            bad = ~(np.isfinite(metrics["loss"]) & np.isfinite(metrics["grad_norm"]))
            if bad.any():
                seed_idx, step_idx = np.argwhere(bad)[0]
                raise _diverged(config, manager, workdir, step + step_idx + 1, seed_idx)
            state = new_state
            prev, step = step, step + n
            train_s += dt
            n_next = int(np.clip(config.progress_every_s * n / max(dt, 1e-6), 1, max_chunk))
            bar.update(n)
            bar.set_postfix_str(f"loss {metrics['loss'][:, -1].mean():.4f}, "
                                f"compiled in {compile_s:.1f} s", refresh=False)
            evaluate = _crossed(prev, step, config.eval.every) and step < total
            interrupted = stop.signum is not None and step < total
            if (_crossed(prev, step, config.log_every) or step == total or evaluate
                    or interrupted):
                entry = _log_train(writer, metrics, step, config, lr_schedule(step - 1), n / dt,
                                   train_s)
                if evaluate:  # the final step's evaluation is the run's results
                    result = _evaluate(config, model, _to_host(state["params"]), sampler,
                                       dataset, show_progress=run.show_progress)
                    _log_eval(writer, result, dataset, step, config)
                    entry["eval"] = {"target_returns": list(result.targets),
                                     "returns_per_seed": result.returns.transpose(1, 0, 2)
                                     .tolist()}  # [T][S][E]
                history.append(entry)
                record.append(entry)  # flushed + fsync'd before the checkpoint of this step
            if _crossed(prev, step, config.checkpoint_every) or step == total or interrupted:
                checkpoint.save(manager, step, state, train_s)
            if interrupted:
                raise _interrupted(stop, manager, workdir, step)
    return state, train_s, compile_s


def _interrupted(stop: StopSignals, manager, workdir: str, step: int) -> TrainingInterrupted:
    """After the checkpoint of `step` is written: hand a SIGUSR2 over to submitit (it requeues
    the job, which resumes from that checkpoint), else the error that stops the run."""
    manager.wait_until_finished()
    if stop.signum == signal.SIGUSR2:
        stop.hand_over()
    return TrainingInterrupted(
        f"training stopped by {stop.name} at step {step}: its checkpoint is in "
        f"{workdir}/checkpoints and its training record in train_history.jsonl. Run the same "
        "command again (same --workdir) to resume from that step.", stop.signum)


def _to_host(tree):
    """Numpy values of (possibly multi-process, not fully addressable) arrays."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def _diverged(config, manager, workdir, step, seed_idx) -> TrainingDivergedError:
    manager.wait_until_finished()  # the message names a checkpoint that really exists
    saved = manager.latest_step()
    if saved is None:
        kept = (f"No checkpoint had been written yet (config.checkpoint_every="
                f"{config.checkpoint_every}), so there is nothing to resume from")
    else:
        kept = f"The last good checkpoint (step {saved}) is kept in {workdir}/checkpoints"
    return TrainingDivergedError(
        f"non-finite loss or gradient at step {step} (seed {config.seed + seed_idx}); training "
        f"stopped. {kept}. Try a lower --config.optim.learning_rate / ssm_learning_rate or a "
        "smaller grad_clip (in a new --workdir: a changed optimiser does not resume).")


def _crossed(prev: int, now: int, every: int) -> bool:
    return every > 0 and now // every > prev // every


def _trial_label(config, i: int) -> str:
    """TensorBoard name of trial i: seed<N>, plus its optimiser values when config.sweep is set."""
    trial = trial_table(config)[i]
    label = f"seed{trial['seed']}"
    for k in VMAPPABLE:
        if config.sweep[k]:
            label += f"_{k}{trial[k]:g}"
    return label


def _log_train(writer, metrics, step, config, lr, steps_per_s, train_s) -> dict:
    """Write the chunk's last-step metrics to TensorBoard; returns the history record."""
    loss = np.asarray(metrics["loss"])[:, -1]
    grad_norm = np.asarray(metrics["grad_norm"])[:, -1]
    writer.add_scalar("train/loss", float(loss.mean()), step)
    writer.add_scalar("train/grad_norm", float(grad_norm.mean()), step)
    writer.add_scalar("train/learning_rate", float(lr), step)
    writer.add_scalar("train/steps_per_s", float(steps_per_s), step)
    for i, v in enumerate(loss):
        writer.add_scalar(f"train/loss_{_trial_label(config, i)}", float(v), step)
    return {"step": int(step), "loss": loss.tolist(), "grad_norm": grad_norm.tolist(),
            "learning_rate": float(lr), "steps_per_s": float(steps_per_s),
            "train_s": float(train_s)}


def _log_eval(writer, result, dataset, step, config):
    for ti, target in enumerate(result.targets):
        per_seed = result.returns[:, ti].mean(axis=-1)
        writer.add_scalar(f"eval/return_target{target:g}", float(per_seed.mean()), step)
        for si, r in enumerate(per_seed):
            writer.add_scalar(f"eval/return_target{target:g}_{_trial_label(config, si)}",
                              float(r), step)
        if dataset.ref_min_score is not None and dataset.ref_max_score is not None:
            writer.add_scalar(f"eval/normalized_target{target:g}",
                              float(dataset.normalized_score(per_seed).mean()), step)
    writer.flush()


def _validate(config):
    checks = [
        (config.seeds >= 1, "config.seeds must be >= 1"),
        (config.batch_size >= 1, "config.batch_size must be >= 1"),
        (config.num_steps >= 1, "config.num_steps must be >= 1"),
        (config.steps_per_call >= 1, "config.steps_per_call must be >= 1"),
        (config.progress_every_s > 0, "config.progress_every_s must be > 0 (seconds)"),
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


def _validate_fields(config):
    """ConfigError for every remaining field outside its valid range (see configs/base.py)."""
    def is_int(v):
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    def is_num(v):
        return (isinstance(v, int | float | np.number) and not isinstance(v, bool)
                and math.isfinite(v))

    optim = config.optim
    checks = [
        (is_int(config.keep_checkpoints) and config.keep_checkpoints >= 1,
         "config.keep_checkpoints must be an integer >= 1 (0 would keep no checkpoint)"),
        (is_int(config.checkpoint_every) and config.checkpoint_every >= 0,
         "config.checkpoint_every must be an integer >= 0 (0: only at the end)"),
        (is_int(config.log_every) and config.log_every >= 0,
         "config.log_every must be an integer >= 0 (0: only at the end)"),
        (is_int(config.seed) and config.seed >= 0, "config.seed must be an integer >= 0"),
        (is_int(config.seed_axis_devices) and config.seed_axis_devices >= 1,
         "config.seed_axis_devices must be an integer >= 1"),
        (is_int(config.eval.every) and config.eval.every >= 0,
         "config.eval.every must be an integer >= 0 (0: only at the end)"),
        (is_int(config.eval.max_episode_steps) and config.eval.max_episode_steps >= 1,
         "config.eval.max_episode_steps must be an integer >= 1"),
        (all(is_num(t) for t in config.eval.target_returns),
         "config.eval.target_returns must be finite numbers"),
        (is_num(optim.ssm_learning_rate) and optim.ssm_learning_rate > 0,
         "config.optim.ssm_learning_rate must be a positive number"),
        (is_num(optim.weight_decay) and optim.weight_decay >= 0,
         "config.optim.weight_decay must be a number >= 0"),
        (is_int(optim.warmup_steps) and optim.warmup_steps >= 0,
         "config.optim.warmup_steps must be an integer >= 0"),
        (is_num(optim.grad_clip) and optim.grad_clip > 0,
         "config.optim.grad_clip must be a positive number"),
        (is_num(optim.b1) and 0 <= optim.b1 < 1, "config.optim.b1 must be in [0, 1)"),
        (is_num(optim.b2) and 0 <= optim.b2 < 1, "config.optim.b2 must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    defaults = models_lib.DEFAULTS.get(config.model.get("name"), {})
    for key, value in config.model.items():
        default = defaults.get(key)
        if is_int(default) and not (is_int(value) and value >= 1):
            raise ConfigError(f"config.model.{key} must be an integer >= 1, got {value!r}")
        if key == "dropout" and not (is_num(value) and 0 <= value < 1):
            raise ConfigError(f"config.model.dropout must be in [0, 1), got {value!r}")
        if isinstance(default, tuple) and not (
                isinstance(value, list | tuple) and len(value) >= 1
                and all(is_int(v) and v >= 1 for v in value)):
            raise ConfigError(f"config.model.{key} must be a non-empty list of integers >= 1, "
                              f"got {value!r}")


__all__ = ["ConfigError", "TrainingDivergedError", "TrainingInterrupted", "build",
           "build_optimizer", "init_run_state", "init_state", "make_mesh", "make_train_chunk",
           "seed_keys", "train_and_evaluate", "trial_inputs", "trial_table"]
