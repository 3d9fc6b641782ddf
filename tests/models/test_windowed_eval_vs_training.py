"""Evaluation's first steps against the training windows, for the windowed models (DT, Decision
Mamba): a tiny model trained from scratch on the embedded Hopper data is run through the
evaluation policy (`evaluate.rollout.ReturnConditionedPolicy`: state normalisation, return-to-go
target and decrement, previous action, timestep, the left-padded window of `windowed_step`) on a
dataset episode, and its action at every step t equals the training call (`model.apply`) on the
window the sampler builds (`data.sampling.windows_at`, which `sample_batch` calls): for t < K the
window that starts at the episode's first step (K real steps, no padding; causality keeps steps
after t out of preds[t]), for t >= K the window [t-K+1, t]; and on the padded windows the sampler
builds at an episode's end.
"""

import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from s4dm_jax.data import load_dataset
from s4dm_jax.data.sampling import SequenceSampler, sample_batch, windows_at
from s4dm_jax.envs.runner import StepContext
from s4dm_jax.evaluate.rollout import EvalSettings, ReturnConditionedPolicy
from s4dm_jax.models import make_model

K = 8
TINY = {"dt": dict(d_model=32, n_layers=1, n_heads=1, context_len=K, dropout=0.0),
        "mamba": dict(d_model=32, n_layers=1, d_state=8, context_len=K, dropout=0.0)}


@functools.lru_cache(maxsize=1)
def _sampler():
    data = load_dataset("embedded")
    return data, SequenceSampler(data, K, rtg_scale=1000.0)


@functools.lru_cache(maxsize=2)
def _trained(name: str, steps: int = 60):
    """A tiny model trained from scratch (Adam 3e-3, batch 32) on the embedded data, with the
    preds after training far from the ones at init (so the check is on trained weights)."""
    data, sampler = _sampler()
    model = make_model(name, data.obs_dim, data.act_dim, discrete=False, **TINY[name])
    params = model.init(jax.random.PRNGKey(0))
    opt = optax.adam(3e-3)

    @jax.jit
    def update(params, opt_state, key):
        batch = sample_batch(sampler.arrays, key, 32, K)
        grads = jax.grad(lambda p: model.loss(p, batch, key, train=False)[0])(params)
        upd, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, upd), opt_state

    trained, opt_state = params, opt.init(params)
    for key in jax.random.split(jax.random.PRNGKey(1), steps):
        trained, opt_state = update(trained, opt_state, key)
    return model, params, trained


def _policy_actions(model, params, data, sampler, episode: int, steps: int):
    """The evaluation policy driven by dataset episode `episode`'s raw observations and rewards,
    with target = the episode's return (so its return-to-go is the data's): outputs [steps, act]
    (the model's actions, the policy's own previous actions fed back)."""
    start = int(data.episode_starts[episode])
    settings = EvalSettings(env_id="Hopper-v5", targets=(float(data.episode_returns[episode]),),
                            episodes=1, state_mean=sampler.state_mean,
                            state_std=sampler.state_std, rtg_scale=sampler.rtg_scale)
    one_seed = jax.tree_util.tree_map(lambda x: x[None], params)
    space = gym.spaces.Box(-1.0, 1.0, (data.act_dim,), np.float32)  # Hopper's action bounds
    policy = ReturnConditionedPolicy(model, one_seed, settings, space)
    outs = []
    for t in range(steps):
        prev = float(data.rewards[start + t - 1]) if t else 0.0
        ctx = StepContext(t=np.array([t]), prev_reward=np.array([prev]),
                          active=np.array([True]))
        policy(data.observations[start + t][None], ctx)
        outs.append(policy.a_prev.reshape(-1).copy())
    return np.stack(outs)


@pytest.mark.parametrize("name", ["dt", "mamba"])
def test_evaluation_policy_equals_training_call_on_sampler_windows(name):
    data, sampler = _sampler()
    model, init_params, params = _trained(name)
    episode = int(sampler.episodes[0])
    start, length = int(data.episode_starts[episode]), int(data.episode_lengths[episode])
    steps = K + 4
    assert length > steps
    acts = _policy_actions(model, params, data, sampler, episode, steps)
    # the sampler's arrays with this episode's actions replaced by the policy's own (what its
    # window holds); states and returns-to-go are the data's
    arrays = dict(sampler.arrays)
    arrays["actions"] = arrays["actions"].at[start:start + steps].set(jnp.asarray(acts))
    apply = jax.jit(model.apply)
    first = windows_at(arrays, jnp.array([start]), K)
    assert float(first["mask"].min()) == 1.0 and int(first["timesteps"][0, 0]) == 0
    preds = np.asarray(apply(params, first))[0]
    np.testing.assert_allclose(acts[:K], preds, atol=2e-5)
    for t in range(K, steps):
        win = windows_at(arrays, jnp.array([start + t - K + 1]), K)
        np.testing.assert_allclose(acts[t], np.asarray(apply(params, win))[0, -1], atol=2e-5)
    # trained weights: the predictions moved away from the initial model's
    assert np.abs(preds - np.asarray(apply(init_params, first))[0]).max() > 0.05


@pytest.mark.parametrize("name", ["dt", "mamba"])
def test_sampler_end_of_episode_windows_are_left_padded_like_evaluation(name):
    """A window the sampler cuts at an episode's end (j < K real steps, left-padded with zeros
    and mask 0) predicts on its real steps what the unpadded prefix of those steps predicts:
    the model reads left padding as nothing, in training as in evaluation's first steps."""
    data, sampler = _sampler()
    model, _, params = _trained(name)
    episode = int(sampler.episodes[0])
    end = int(data.episode_starts[episode] + data.episode_lengths[episode])
    real = 3
    cut = windows_at(sampler.arrays, jnp.array([end - real]), K)
    np.testing.assert_array_equal(np.asarray(cut["mask"][0]), [0] * (K - real) + [1] * real)
    for key in ("rtg", "states", "actions", "timesteps"):
        assert not np.asarray(cut[key][0, :K - real]).any()
    prefix = {k: v[:, K - real:] for k, v in cut.items()}
    np.testing.assert_allclose(np.asarray(model.apply(params, cut))[0, K - real:],
                               np.asarray(model.apply(params, prefix))[0], atol=2e-5)
