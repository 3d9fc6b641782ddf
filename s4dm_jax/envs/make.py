"""Environment construction and environment-id validation (gymnasium).

An environment id named by a dataset is only accepted when it is an exact key of gymnasium's
registry (`validate_env_id` with explicit=False): an id like 'module:Name-v0' would make
gymnasium import `module`, so data must never reach `gymnasium.make` unchecked. Ids the user
passes explicitly may name a module. `make_env` / `make_vector_env` make what those checks
accepted.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging

import gymnasium
import numpy as np
from gymnasium import spaces

from s4dm_jax.envs import tmaze

_LOG = logging.getLogger(__name__)
_LOGGED_MUJOCO_WARNINGS: set[str] = set()  # messages already logged at WARNING by this process


class EnvError(ValueError):
    """An environment id is refused or cannot be made, or its spaces do not fit; the message
    says what to change."""


# Compatibility shims that gymnasium registers to load *other* ids; never chosen by data.
_SHIM_ENV_PREFIXES = ("GymV21Environment", "GymV26Environment")


def registered_env_ids() -> list[str]:
    """Sorted gymnasium ids a dataset may name: those registered by gymnasium itself on import
    (MuJoCo, classic control, Box2D, toy text; the families this package evaluates in)."""
    return sorted(i for i in gymnasium.registry if not i.startswith(_SHIM_ENV_PREFIXES))


def validate_env_id(env_id: str, *, explicit: bool, where: str, source: str = "",
                    error: type[Exception] = EnvError) -> str:
    """Return `env_id` if it may be used to make an environment, else raise `error`.

    An id that comes from data (`explicit` False; `source` says where it was read) must be an
    exact key of gymnasium's registry: it is checked against the registry dict only, so nothing
    is imported, and `module:Name` ids (which make gymnasium import `module`) are refused. An
    id the user passed (`explicit` True, config.env_id / env_id=) may be `module:Name`; it is
    resolved with gymnasium.spec and must exist.
    """
    text = str(env_id)
    tmaze.ensure_registered(text)  # any corridor length: parsed from a fixed pattern
    valid = registered_env_ids()
    if explicit:
        try:
            gymnasium.spec(text)
            return text
        except Exception as e:  # gymnasium raises several error types for unknown ids
            reason = f"gymnasium says: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        what = (f"{where}: env_id {text!r} (config.env_id / env_id=) is not a registered "
                f"gymnasium environment ({reason})")
    else:
        if text in valid:
            return text
        what = (f"{where}: the data names the environment {text!r} ({source}), which is not an "
                "id registered with gymnasium. Environment ids read from data are only accepted "
                "when registered, because an id like 'module:Name-v0' makes gymnasium import "
                "`module`; nothing was imported")
    close = difflib.get_close_matches(text.split(":")[-1], valid, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise error(
        f"{what}.{hint} Registered ids: {', '.join(valid)}. Pass the environment to evaluate in "
        "explicitly with --config.env_id=ID (load_dataset(..., env_id=ID)); an explicit id may "
        "also name a module to import first, e.g. 'my_envs:MyEnv-v0', if you trust that module.")


def _log_mujoco_warning(message: str) -> None:
    """Log a MuJoCo warning at WARNING the first time this process sees it, and its repeats at
    DEBUG: MuJoCo repeats a model's warning every time it compiles it (every copy of a vector
    env, every evaluation env)."""
    text = message.strip()
    level = logging.DEBUG if text in _LOGGED_MUJOCO_WARNINGS else logging.WARNING
    _LOGGED_MUJOCO_WARNINGS.add(text)
    _LOG.log(level, "MuJoCo: %s", text)


@contextlib.contextmanager
def mujoco_warnings_to_logging():
    """Within the block, MuJoCo warnings go to this module's logger instead of MUJOCO_LOG.TXT.

    Without a warning callback MuJoCo appends every warning to MUJOCO_LOG.TXT in the current
    directory (e.g. MuJoCo 4 warns about HalfCheetah's deprecated `settotalmass` whenever the
    model is compiled). Each distinct message is logged at WARNING once per process, repeats at
    DEBUG. The previous callback is restored on exit; no file is written or removed. A no-op
    where MuJoCo is not installed.
    """
    try:
        import mujoco  # optional: only MuJoCo environments need it
    except ImportError:
        yield
        return
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_log_mujoco_warning)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def check_env_spaces(env_id: str, obs_dim: int, act_dim: int, discrete: bool, where: str,
                     error: type[Exception] = EnvError) -> None:
    """`error` if data with obs_dim / act_dim (discrete or not) does not fit gymnasium's
    `env_id` spaces.

    `env_id` must have passed `validate_env_id`. Skipped (silently) when the env cannot be
    made, e.g. mujoco missing.
    """
    try:
        with mujoco_warnings_to_logging():
            env = gymnasium.make(env_id)
    except Exception:
        return
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if isinstance(obs_space, spaces.Box) and obs_space.shape != (obs_dim,):
        raise error(f"{where}: observations have {obs_dim} features per step but {env_id} "
                    f"observations have shape {obs_space.shape}; pass env_id= for the "
                    "environment this data came from")
    if isinstance(act_space, spaces.Discrete):
        if not discrete or act_dim > int(act_space.n):
            raise error(f"{where}: actions ({'discrete' if discrete else 'continuous'}, "
                        f"size {act_dim}) do not match {env_id}'s {act_space}; pass env_id= "
                        "for the environment this data came from")
    elif isinstance(act_space, spaces.Box):
        if discrete or act_space.shape != (act_dim,):
            kind = f"discrete ({act_dim} actions)" if discrete else f"{act_dim} dims"
            raise error(f"{where}: actions have {kind} but {env_id} actions have shape "
                        f"{act_space.shape}; pass env_id= for the environment this data "
                        "came from")


def make_env(env_id: str, *, max_episode_steps: int | None = None,
             render_mode: str | None = None, unit_actions: bool = False) -> gymnasium.Env:
    """`gymnasium.make(env_id)` (an id that passed `validate_env_id`), EnvError if it fails.

    max_episode_steps: the time limit (None: the registered one); render_mode: e.g.
    "rgb_array"; unit_actions: EnvError unless actions are a Box in [-1, 1] (SAC's tanh policy).
    """
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    try:
        with mujoco_warnings_to_logging():
            env = gymnasium.make(env_id, render_mode=render_mode, **kwargs)
    except gymnasium.error.Error as e:
        raise EnvError(
            f"cannot create the environment {env_id!r}: {e}. Pass a registered gymnasium id "
            "(e.g. Hopper-v5; MuJoCo envs need gymnasium[mujoco]).") from e
    space = env.action_space
    if unit_actions and not (isinstance(space, spaces.Box) and np.allclose(space.low, -1.0)
                             and np.allclose(space.high, 1.0)):
        env.close()
        raise EnvError(f"{env_id}: SAC here assumes actions in [-1, 1], got {space}")
    return env


def make_vector_env(env_id: str, num_envs: int, *,
                    autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED,
                    **env_kwargs) -> gymnasium.vector.SyncVectorEnv:
    """`num_envs` copies of `make_env(env_id, **env_kwargs)` stepped in this process (sync mode:
    faster than subprocesses for MuJoCo on few cores, see REFERENCE 4).

    The default autoreset_mode DISABLED is what `s4dm_jax.envs.runner.run_episodes` drives: an
    env whose episode ended is reset only when the runner says so. `reset(seed=s)` seeds copy i
    with s + i; later resets continue each copy's own generator, as a single env's reset() does.
    """
    return gymnasium.vector.SyncVectorEnv(
        [functools.partial(make_env, env_id, **env_kwargs)] * int(num_envs),
        autoreset_mode=autoreset_mode)
