"""Evaluation, GIF rendering, dataset collection and SAC evaluation all run their episodes
through `s4dm_jax.envs.run_episodes`, with the values of plain single-env loops."""

import imageio.v2 as imageio
import jax
import numpy as np
import pytest
from counter_env import COUNTER_ID

from s4dm_jax.data import collect
from s4dm_jax.envs import make_env, runner
from s4dm_jax.evaluate import rollout as evaluation
from s4dm_jax.models import make_model
from s4dm_jax.rl import SAC, Policy, SACConfig
from s4dm_jax.rl import train as sac_train

pytest.importorskip("mujoco")


@pytest.fixture
def runner_calls(monkeypatch, tmp_path):
    """Counts the calls to the real run_episodes made by each user module."""
    monkeypatch.chdir(tmp_path)  # mujoco may write MUJOCO_LOG.TXT into the cwd
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return runner.run_episodes(*args, **kwargs)
    for module in (evaluation, collect, sac_train):
        monkeypatch.setattr(module, "run_episodes", counted)
    return calls


def eval_reference(model, params, env_id, mean, std, rtg_scale, target, max_steps, seed):
    """One return-conditioned episode, written out: one env, the model's step on a batch of 1."""
    env = make_env(env_id)
    obs, _ = env.reset(seed=seed)
    carry, step = model.init_carry(1), jax.jit(model.step)
    prepared = jax.jit(model.prepare_step)(params)
    rtg, a_prev, total = target / rtg_scale, np.zeros((1, model.act_dim), np.float32), 0.0
    for t in range(max_steps):
        s = ((obs - mean) / std).astype(np.float32)[None]
        carry, a = step(prepared, carry, np.array([rtg], np.float32), s, a_prev,
                              np.array([t], np.int32))
        a_prev = np.asarray(a, np.float32)
        obs, r, term, trunc, _ = env.step(np.clip(a_prev[0], -1.0, 1.0))
        total += r
        rtg -= r / rtg_scale
        if term or trunc:
            return total, t + 1
    return total, max_steps


@pytest.mark.parametrize("name", ["dt", "s4dm"])
def test_evaluation_runs_through_the_runner_with_a_plain_loops_returns(name, runner_calls):
    model = make_model(name, 11, 3, d_model=16, n_layers=1, context_len=8)
    seeds = [model.init(jax.random.PRNGKey(k)) for k in range(2)]
    params = jax.tree_util.tree_map(lambda *x: np.stack(x), *seeds)
    mean, std = np.full(11, 0.1, np.float32), np.full(11, 2.0, np.float32)
    targets, episodes, max_steps, seed = (1800.0, 3600.0), 2, 15, 4
    settings = evaluation.EvalSettings(
        env_id="Hopper-v5", targets=targets, episodes=episodes, state_mean=mean, state_std=std,
        rtg_scale=1000.0, max_steps=max_steps, seed=seed, episode_start_windows=True)
    res = evaluation.rollout(model, params, settings)
    assert len(runner_calls) == 1 and runner_calls[0]["max_episode_steps"] == max_steps
    assert res.returns.shape == (2, 2, 2) and res.env_steps == res.lengths.sum()
    for s in range(2):
        for j, target in enumerate(targets):
            for e in range(episodes):
                copy = (s * len(targets) + j) * episodes + e
                ret, length = eval_reference(model, seeds[s], "Hopper-v5", mean, std, 1000.0,
                                             target, max_steps, seed + copy)
                assert res.lengths[s, j, e] == length
                np.testing.assert_allclose(res.returns[s, j, e], ret, rtol=1e-4)


def test_render_episode_runs_through_the_runner(runner_calls, tmp_path):
    model = make_model("bc", 3, 2, hidden_dims=(8,))
    params = model.init(jax.random.PRNGKey(0))
    settings = evaluation.EvalSettings(env_id=COUNTER_ID, targets=(5.0,), episodes=1,
                                       state_mean=np.zeros(3), state_std=np.ones(3),
                                       rtg_scale=1.0, max_steps=9, seed=2)
    ret = evaluation.render_episode(model, params, str(tmp_path / "x.gif"), settings)
    assert runner_calls[0]["keep"] == ("frames",)
    stacked = jax.tree_util.tree_map(lambda x: x[None], params)
    res = evaluation.rollout(model, stacked, settings)
    assert ret == res.returns[0, 0, 0]  # the same episode as evaluation's
    frames = imageio.mimread(tmp_path / "x.gif")
    assert len(frames) == len(range(0, int(res.lengths[0, 0, 0]) + 1, 2))


def old_collect_loop(env_id, policy, steps, seed):
    """The single-env collection loop that `collect.rollout` replaced (reference)."""
    env, rng = sac_train.make_env(env_id), np.random.default_rng(seed)
    episodes, obs = [], env.reset(seed=seed)[0]
    cur = {"observations": [obs], "actions": [], "rewards": [], "terminations": [],
           "truncations": []}
    for t in range(steps):
        act = (rng.uniform(-1.0, 1.0, 3).astype(np.float32) if policy is None
               else policy.act(obs, rng))
        obs, rew, term, trunc, _ = env.step(act)
        trunc = bool(trunc) or (t == steps - 1 and not term)
        for k, v in zip(cur, (obs, act, rew, term, trunc), strict=True):
            cur[k].append(v)
        if term or trunc:
            episodes.append({k: np.asarray(v) for k, v in cur.items()})
            obs = env.reset()[0]
            cur = {"observations": [obs], "actions": [], "rewards": [], "terminations": [],
                   "truncations": []}
    return episodes


@pytest.fixture(scope="module")
def small_policy():
    """An untrained hopper actor (its episodes end within tens of steps)."""
    agent = SAC(11, 3, SACConfig(hidden=(16, 16)))
    return Policy(agent.init(jax.random.PRNGKey(1)).actor_params, 11, 3, (16, 16))


@pytest.mark.parametrize("behaviour", ["random", "policy"])
def test_collection_runs_through_the_runner_with_the_old_loops_transitions(
        behaviour, runner_calls, small_policy):
    policy = small_policy if behaviour == "policy" else None
    got = collect.rollout("Hopper-v5", policy, 90, seed=3, progress=False)
    assert runner_calls[0]["steps_per_env"] == 90 and runner_calls[0]["keep"] == ("transitions",)
    want = old_collect_loop("Hopper-v5", policy, 90, seed=3)
    assert len(got) == len(want) >= 3 and sum(len(e["actions"]) for e in got) == 90
    for g, w in zip(got, want, strict=True):
        for k in w:
            np.testing.assert_array_equal(g[k], w[k].astype(g[k].dtype))
        assert g["observations"].dtype == np.float64 and g["actions"].dtype == np.float32
    assert got[-1]["truncations"][-1]  # cut at the budget


def test_random_reference_return_runs_through_the_runner(runner_calls):
    mean, std = collect.random_policy_return("Hopper-v5", 1, seed=5)
    env, rng, total, done = sac_train.make_env("Hopper-v5"), np.random.default_rng(5), 0.0, False
    env.reset(seed=5)
    while not done:
        _, r, term, trunc, _ = env.step(rng.uniform(-1.0, 1.0, 3))
        total, done = total + r, term or trunc
    assert len(runner_calls) == 1 and mean == total and std == 0.0


def test_sac_evaluation_runs_through_the_runner(runner_calls, small_policy):
    got = sac_train.evaluate_policy(small_policy, "Hopper-v5", 3, seed=21, deterministic=True)
    assert len(runner_calls) == 1 and runner_calls[0]["episodes_per_env"] == 1
    for i in range(3):
        env = sac_train.make_env("Hopper-v5")
        o, _ = env.reset(seed=21 + i)
        total, done = 0.0, False
        while not done:
            o, r, term, trunc, _ = env.step(small_policy.act(o, deterministic=True))
            total, done = total + r, term or trunc
        np.testing.assert_allclose(got[i], total, rtol=1e-5)
