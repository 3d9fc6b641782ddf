"""Saved behaviour policies: actor parameters (orbax) + a JSON description.

Layout of a policy directory::

    <dir>/policy.json   obs_dim, act_dim, hidden, env_id, eval return reached, command, seed, ...
    <dir>/actor/        orbax StandardCheckpointer checkpoint of the actor variables
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from s4dm_jax.rl.networks import Actor


@functools.cache
def _dist_fn(act_dim: int, hidden: tuple[int, ...]):
    """Jitted actor apply, cached per architecture (avoids re-tracing per Policy object)."""
    return jax.jit(Actor(act_dim, hidden).apply)


class Policy:
    """A tanh-Gaussian actor usable from numpy: ``act(obs [obs], rng) -> action [act]`` and
    ``act_batch(obs [B, obs], rng) -> actions [B, act]``.

    ``rng`` None (or deterministic=True) gives tanh(mean); otherwise a sample
    tanh(mean + std * eps) with eps drawn from the numpy Generator (reproducible by seed).
    """

    def __init__(self, actor_params: Any, obs_dim: int, act_dim: int, hidden=(256, 256),
                 meta: dict | None = None):
        self.obs_dim, self.act_dim, self.hidden = int(obs_dim), int(act_dim), tuple(hidden)
        self.params = actor_params
        self.meta = dict(meta or {})
        self._dist = _dist_fn(self.act_dim, self.hidden)

    def dist(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """obs [B, obs] -> (mean [B, act], log_std [B, act]) as float32 numpy."""
        mean, log_std = self._dist(self.params, jnp.asarray(obs, jnp.float32))
        return np.asarray(mean), np.asarray(log_std)

    def act_batch(self, obs: np.ndarray, rng: np.random.Generator | None = None,
                  deterministic: bool = False) -> np.ndarray:
        """Observations [B, obs] -> actions [B, act] in (-1, 1) (float32), one jitted call.

        The noise is ``rng.standard_normal((B, act))``: row b uses the draws the b-th of B
        successive ``act`` calls would; a batch of one equals ``act`` bit for bit (other batch
        sizes may differ from it in the last bits, as XLA picks another matmul kernel).
        """
        mean, log_std = self.dist(np.asarray(obs, np.float32))
        if deterministic or rng is None:
            return np.tanh(mean)
        eps = rng.standard_normal(mean.shape).astype(np.float32)
        return np.tanh(mean + np.exp(log_std) * eps)

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Single observation [obs] -> action [act] in (-1, 1) (float32)."""
        return self.act_batch(np.asarray(obs, np.float32)[None], rng, deterministic)[0]

    # ------------------------------------------------------------------ io
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``policy.json`` + ``actor/`` (refuses to overwrite an existing directory)."""
        directory = Path(directory).absolute()
        if (directory / "policy.json").exists() or (directory / "actor").exists():
            raise FileExistsError(f"policy directory {directory} already holds a policy; "
                                  "delete it or choose another path")
        directory.mkdir(parents=True, exist_ok=True)
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(directory / "actor", jax.tree_util.tree_map(jnp.asarray, self.params))
        ckptr.wait_until_finished()
        meta = {**self.meta, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "hidden": list(self.hidden)}
        (directory / "policy.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Policy:
        """Read a directory written by ``save``."""
        directory = Path(directory).absolute()
        meta_path = directory / "policy.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no policy.json in {directory} (not a saved policy)")
        meta = json.loads(meta_path.read_text())
        hidden = tuple(meta.get("hidden", (256, 256)))
        actor = Actor(int(meta["act_dim"]), hidden)
        target = actor.init(jax.random.PRNGKey(0), jnp.zeros((1, int(meta["obs_dim"]))))
        params = ocp.StandardCheckpointer().restore(directory / "actor", target)
        return cls(params, meta["obs_dim"], meta["act_dim"], hidden, meta)
