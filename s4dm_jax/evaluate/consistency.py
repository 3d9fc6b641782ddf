"""Evaluation-time check that a trained model's `step` (what the rollout runs) computes its
training call (what was trained) on one dataset episode.

S4DM trains C~ = (I - Ab^L)^T C and its `prepare_step` solves for C; for slow modes (Ab^L
close to I) that solve is ill-conditioned, and the recurrent policy that is evaluated is then
not the model that was trained. The same check also catches any other step/call drift.

Tolerance: max |step - call| over the episode's action predictions <= DEFAULT_TOLERANCE *
max(1, max |call|); non-finite predictions on either path fail. Float32 models agree to ~1e-5
on this check (tests/models: 1e-4 relative), bfloat16 compute to a few 1e-3. Measured on a
2-layer S4DM (dplr, diag-lin init, L = 300, one mode with Im = 0 and C~ = (1 - Ab^L) c): the
solve (ssm.kernels, cancellation-free I - Ab^L) keeps step == call within 6e-5 down to
Re(Lambda) = -1e-9 (dt 1e-3); at Re(Lambda) <= -1e-10 the predictions become non-finite.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_TOLERANCE = 1e-2
_LOG = logging.getLogger(__name__)


class StepCallMismatchWarning(UserWarning):
    """The model's recurrent step differs from its training call by more than the tolerance."""


@dataclasses.dataclass(frozen=True)
class StepCallCheck:
    """max_abs_diff f64 [S] per parameter set (seed), scale (max |call| over all), steps
    compared, tolerance (absolute, already times max(1, scale)), ok."""

    max_abs_diff: np.ndarray
    scale: float
    steps: int
    tolerance: float
    ok: bool


def dataset_episode(arrays: dict, start: int, length: int) -> dict:
    """Batch of one episode prefix {rtg [1,n], states [1,n,obs], actions, timesteps, mask} from
    a SequenceSampler's `arrays` (normalised states, scaled returns-to-go)."""
    sl = slice(int(start), int(start) + int(length))
    ep = {k: arrays[k][sl][None] for k in ("rtg", "states", "actions", "timesteps")}
    ep["mask"] = jnp.ones((1, int(length)), jnp.float32)
    return ep


@functools.lru_cache(maxsize=8)
def _gap_fn(model):
    """Jitted (params [S, ...], episode) -> (max |step - call| [S], max |call| [S])."""

    def one(params, ep):
        preds = model.apply(params, ep)
        variables = model.prepare_step(params)
        a_prev = jnp.concatenate([jnp.zeros_like(ep["actions"][:, :1]), ep["actions"][:, :-1]], 1)
        xs = [jnp.swapaxes(x, 0, 1) for x in (ep["rtg"], ep["states"], a_prev, ep["timesteps"])]

        def body(carry, x):
            return model.step(variables, carry, *x)

        _, outs = jax.lax.scan(body, model.init_carry(1), xs)
        stepped = jnp.swapaxes(outs, 0, 1)
        return jnp.max(jnp.abs(stepped - preds)), jnp.max(jnp.abs(preds))

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def step_call_check(model, params, sampler, *, episode: int = 0,
                    tolerance: float = DEFAULT_TOLERANCE) -> StepCallCheck:
    """Compare `model.step` run over the first min(T, context_len) steps of the sampler's
    kept episode `episode` with `model.apply` on that prefix, for every parameter set of
    `params` (leaves with any leading axes, e.g. [S, ...] seeds; unbatched works too)."""
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    arrays = sampler.arrays
    n_kept = int(arrays["ep_start"].shape[0])
    if not 0 <= episode < n_kept:
        raise ValueError(f"episode={episode} is not one of the {n_kept} kept episodes")
    length = min(int(arrays["ep_len"][episode]), int(model.context_len))
    ep = dataset_episode(arrays, int(arrays["ep_start"][episode]), length)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    flat = jax.tree_util.tree_map(
        lambda x, s: jnp.reshape(jnp.asarray(x), (-1, *s.shape)), params, shapes)
    gap, scale = (np.asarray(v, np.float64) for v in _gap_fn(model)(flat, ep))
    scale_all = float(scale.max())
    tol = float(tolerance) * max(1.0, scale_all) if np.isfinite(scale_all) else float(tolerance)
    return StepCallCheck(gap, scale_all, length, tol, bool(np.all(gap <= tol)))  # NaN: False


def warn_if_step_differs(model, params, sampler, *, tolerance: float = DEFAULT_TOLERANCE,
                         where: str = "evaluation") -> StepCallCheck:
    """`step_call_check` on the first kept episode; a StepCallMismatchWarning (and a log line)
    naming the difference when the tolerance is exceeded. Returns the check."""
    check = step_call_check(model, params, sampler, tolerance=tolerance)
    if not check.ok:
        msg = (f"{where}: the model's recurrent step differs from its training call on a dataset "
               f"episode ({check.steps} steps) by max |difference| = "
               f"{', '.join(f'{g:.3g}' for g in check.max_abs_diff)} per seed (nan: non-finite "
               f"predictions), above the tolerance {check.tolerance:.3g} ({tolerance} x "
               f"max(1, {check.scale:.3g})). The "
               "evaluated policy is not the trained model; for S4DM the likely cause is an "
               "ill-conditioned C~ -> C readout solve (slow modes with Ab^L close to I: consider "
               "a shorter context_len, mode='diag', or inference='window').")
        _LOG.warning(msg)
        warnings.warn(msg, StepCallMismatchWarning, stacklevel=2)
    return check
