"""The evaluation-time step == training call check: silent on healthy models, a warning with the
measured difference on a model whose step drifts by a known amount and on an ill-conditioned
S4DM (a mode with Re(Lambda) = -1e-10, L = 300)."""

import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.evaluate.consistency import (
    StepCallMismatchWarning,
    step_call_check,
    warn_if_step_differs,
)
from s4dm_jax.models import make_model

OBS, NACT, T = 3, 4, 60


def _sampler(length=T, discrete=True, seed=0):
    """Stand-in for a SequenceSampler: `arrays` with two episodes (the first is checked)."""
    rng = np.random.default_rng(seed)
    n = 2 * length
    acts = rng.integers(0, NACT, n) if discrete else rng.uniform(-1, 1, (n, 2))
    return types.SimpleNamespace(arrays={
        "rtg": jnp.asarray(rng.normal(size=n), jnp.float32),
        "states": jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32),
        "actions": jnp.asarray(acts, jnp.int32 if discrete else jnp.float32),
        "timesteps": jnp.asarray(np.tile(np.arange(length), 2), jnp.int32),
        "ep_start": jnp.asarray([0, length], jnp.int32),
        "ep_len": jnp.asarray([length, length], jnp.int32)})


def _s4dm(context_len=T):
    return make_model("s4dm", OBS, NACT, discrete=True, d_model=8, n_layers=2,
                      ssm=dict(d_state=8, init="diag-lin"), context_len=context_len)


@pytest.mark.parametrize("name", ["s4dm", "dt", "bc"])
def test_healthy_models_pass_silently_with_seed_axis(name):
    kw = {"s4dm": dict(d_model=8, n_layers=2, ssm=dict(d_state=8), context_len=T),
          "dt": dict(d_model=16, n_layers=1, n_heads=2, context_len=20),
          "bc": dict(hidden_dims=(16,))}[name]
    model = make_model(name, OBS, 2, discrete=False, **kw)
    params = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(0), 3))  # [S=3, ...]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = warn_if_step_differs(model, params, _sampler(discrete=False))
    assert check.ok and check.max_abs_diff.shape == (3,)
    assert check.steps == min(T, model.context_len)
    assert np.all(check.max_abs_diff <= 1e-4 * max(1.0, check.scale))


class Drifting:
    """A model whose step adds `drift` to every prediction of the wrapped model."""

    def __init__(self, model, drift):
        self.model, self.drift = model, drift
        self.context_len = model.context_len

    def __getattr__(self, name):
        return getattr(self.model, name)

    def step(self, *args):
        carry, out = self.model.step(*args)
        return carry, out + self.drift


def test_a_known_drift_is_measured_and_warned():
    base = _s4dm()
    params = base.init(jax.random.PRNGKey(1))
    check = step_call_check(Drifting(base, 0.003), params, _sampler())
    assert check.ok and abs(check.max_abs_diff[0] - 0.003) <= 1e-4
    with pytest.warns(StepCallMismatchWarning, match=r"0\.2 per seed.*tolerance"):
        check = warn_if_step_differs(Drifting(base, 0.2), params, _sampler(), tolerance=1e-2)
    assert not check.ok and abs(check.max_abs_diff[0] - 0.2) <= 1e-4
    assert check.tolerance == pytest.approx(1e-2 * max(1.0, check.scale))


def test_ill_conditioned_s4dm_is_flagged():
    """A mode with Im = 0, Re(Lambda) = -1e-10 and dt = 1e-3 at L = 300: I - Ab^L ~ 3e-11;
    the predictions are no longer finite and the check fails (the same model with
    Re(Lambda) = -1e-9 passes: measured difference 6e-5)."""
    model = _s4dm(300)
    params = model.init(jax.random.PRNGKey(0))

    def slow(re):
        def edit(path, x):
            name = str(path[-1])
            if "log_neg_Lambda_re" in name:
                return x.at[..., 0].set(np.log(re))
            return jnp.full_like(x, np.log(1e-3)) if "log_dt" in name else x
        return jax.tree_util.tree_map_with_path(edit, params)

    sampler = _sampler(300)
    assert step_call_check(model, slow(1e-9), sampler).ok
    with pytest.warns(StepCallMismatchWarning, match="ill-conditioned"):
        check = warn_if_step_differs(model, slow(1e-10), sampler)
    assert not check.ok


def test_bad_arguments():
    model = _s4dm()
    params = model.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="episode"):
        step_call_check(model, params, _sampler(), episode=2)
    with pytest.raises(ValueError, match="tolerance"):
        step_call_check(model, params, _sampler(), tolerance=0)
