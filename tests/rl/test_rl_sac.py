"""Unit tests for the JAX Soft Actor-Critic (s4dm_jax.rl)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.rl import SAC, Policy, ReplayBuffer, SACConfig, polyak_update, split_episodes
from s4dm_jax.rl.networks import tanh_gaussian_sample


def _x64():
    return jax.enable_x64(True) if hasattr(jax, "enable_x64") else (
        jax.experimental.enable_x64())


def _batch(rng, n, obs_dim, act_dim, done=0.0, stack=None):
    shape = (n,) if stack is None else (stack, n)
    obs = rng.normal(size=shape + (obs_dim,)).astype(np.float32)
    act = rng.uniform(-1, 1, size=shape + (act_dim,)).astype(np.float32)
    rew = (np.sin(obs[..., 0]) + act[..., 0]).astype(np.float32)
    return {"obs": obs, "act": act, "rew": rew,
            "next_obs": rng.normal(size=shape + (obs_dim,)).astype(np.float32),
            "done": np.full(shape, done, np.float32)}


def test_polyak_update_matches_numpy():
    rng = np.random.default_rng(0)
    t = {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=(5,))}}
    o = {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=(5,))}}
    with _x64():
        out = polyak_update(jax.tree_util.tree_map(jnp.asarray, t),
                            jax.tree_util.tree_map(jnp.asarray, o), 0.005)
        np.testing.assert_allclose(out["a"], 0.995 * t["a"] + 0.005 * o["a"], rtol=1e-12)
        np.testing.assert_allclose(out["b"]["c"], 0.995 * t["b"]["c"] + 0.005 * o["b"]["c"],
                                   rtol=1e-12)
    # tau = 1 copies, tau = 0 keeps
    np.testing.assert_allclose(polyak_update(t, o, 1.0)["a"], o["a"], rtol=1e-6)
    np.testing.assert_allclose(polyak_update(t, o, 0.0)["a"], t["a"], rtol=1e-6)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    rng = np.random.default_rng(1)
    with _x64():
        mean = jnp.asarray(rng.normal(size=(64, 3)) * 0.5)
        log_std = jnp.asarray(rng.uniform(-1.5, -0.5, size=(64, 3)))
        a, logp = tanh_gaussian_sample(jax.random.PRNGKey(0), mean, log_std)
        a, logp, m, s = (np.asarray(a), np.asarray(logp), np.asarray(mean),
                         np.exp(np.asarray(log_std)))
    u = np.arctanh(a)
    ref = np.sum(-0.5 * ((u - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
                 - np.log(1.0 - a**2), axis=-1)
    assert np.all(np.abs(a) < 1)
    np.testing.assert_allclose(logp, ref, rtol=1e-7, atol=1e-7)


def test_alpha_loss_sign_and_value():
    agent = SAC(4, 2, SACConfig(hidden=(8,)))  # target entropy -2
    assert agent.target_entropy == -2.0
    log_alpha = jnp.asarray(0.3)
    # entropy (= -logp = 1) ... target -2: entropy too HIGH -> alpha must decrease (grad > 0)
    logp_high_ent = jnp.full((10,), -1.0)
    g = jax.grad(agent.alpha_loss)(log_alpha, logp_high_ent)
    np.testing.assert_allclose(g, -(-1.0 - 2.0), rtol=1e-6)  # d/dla of -la*(logp + H_t)
    assert g > 0
    # entropy -3 < target -2: too LOW -> alpha must increase (grad < 0)
    g = jax.grad(agent.alpha_loss)(log_alpha, jnp.full((10,), 3.0))
    assert g < 0
    np.testing.assert_allclose(agent.alpha_loss(log_alpha, jnp.full((10,), 3.0)),
                               -0.3 * (3.0 - 2.0), rtol=1e-6)


@pytest.fixture(scope="module")
def agent():
    """One small agent shared by the jitted tests (its update_many compiles once)."""
    return SAC(3, 1, SACConfig(hidden=(32, 32), critic_lr=1e-3))


def test_shapes_and_update_many(agent):
    obs_dim, act_dim, n = 3, 1, 50
    st = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((7, obs_dim))
    mean, log_std = agent.actor.apply(st.actor_params, obs)
    assert mean.shape == log_std.shape == (7, act_dim)
    assert agent.critic.apply(st.critic_params, obs, jnp.zeros((7, act_dim))).shape == (2, 7)
    a = agent.sample_action(st.actor_params, obs, jax.random.PRNGKey(1))
    assert a.shape == (7, act_dim) and bool(jnp.all(jnp.abs(a) <= 1))
    batches = _batch(np.random.default_rng(0), 64, obs_dim, act_dim, stack=n)
    st2, info = agent.update_many(st, batches)
    assert int(st2.step) == n
    assert set(info) >= {"critic_loss", "actor_loss", "alpha", "entropy", "alpha_loss"}
    assert all(np.ndim(v) == 0 for v in info.values())
    # the target critic moved by exactly n Polyak steps' worth (not copied)
    leaf = lambda p: jax.tree_util.tree_leaves(p)[0]
    assert not np.allclose(leaf(st2.target_critic_params), leaf(st2.critic_params))


def test_critic_loss_value_with_gamma_zero():
    """gamma = 0: target = r, so loss = 0.5 * sum_i mean_b (Q_i(s,a) - r)^2 exactly."""
    agent = SAC(3, 2, SACConfig(hidden=(16,), gamma=0.0))
    st = agent.init(jax.random.PRNGKey(0))
    b = _batch(np.random.default_rng(2), 20, 3, 2)
    loss, _ = agent.critic_loss(st.critic_params, st, b, jax.random.PRNGKey(3))
    q = np.asarray(agent.critic.apply(st.critic_params, b["obs"], b["act"]), np.float64)
    ref = 0.5 * np.sum(np.mean((q - b["rew"][None]) ** 2, axis=1))
    np.testing.assert_allclose(loss, ref, rtol=1e-5)


def test_critic_loss_decreases_on_tiny_task(agent):
    """A few hundred updates on a fixed regression-like task (done=1) cut the critic loss."""
    rng = np.random.default_rng(0)
    st = agent.init(jax.random.PRNGKey(0))
    data = _batch(rng, 512, 3, 1, done=1.0)
    buf = ReplayBuffer(3, 1, 512)
    for i in range(512):
        buf.add(data["obs"][i], data["act"][i], data["rew"][i], data["next_obs"][i], True,
                False)
    first = None
    for _ in range(6):
        st, info = agent.update_many(st, buf.sample(rng, 50, 64))
        first = float(info["critic_loss"]) if first is None else first
    last = float(info["critic_loss"])
    assert last < 0.25 * first, (first, last)


def test_buffer_split_and_roundtrip(tmp_path):
    buf = ReplayBuffer(2, 1, 10)
    obs = np.arange(8, dtype=np.float32)
    ends = {2: "term", 5: "trunc"}  # episodes: steps 0-2, 3-5, 6 (unfinished)
    for t in range(7):
        nxt = obs[t] + 0.5
        buf.add([obs[t], -obs[t]], [0.1 * t], float(t), [nxt, -nxt], ends.get(t) == "term",
                ends.get(t) == "trunc")
    buf.save(tmp_path / "r.npz")
    eps = split_episodes(ReplayBuffer.load(tmp_path / "r.npz").arrays())
    assert [len(e["rewards"]) for e in eps] == [3, 3, 1]
    np.testing.assert_array_equal(eps[0]["observations"][:, 0], [0, 1, 2, 2.5])
    np.testing.assert_array_equal(eps[1]["rewards"], [3, 4, 5])
    assert eps[0]["terminations"].tolist() == [False, False, True]
    assert eps[1]["truncations"].tolist() == [False, False, True]
    assert eps[2]["truncations"].tolist() == [True]  # unfinished episode closed
    with pytest.raises(RuntimeError):
        for _ in range(5):
            buf.add([0, 0], [0], 0.0, [0, 0], False, False)


def test_policy_save_load_roundtrip(tmp_path):
    agent = SAC(4, 2, SACConfig(hidden=(8, 8)))
    st = agent.init(jax.random.PRNGKey(5))
    pol = Policy(st.actor_params, 4, 2, (8, 8), {"eval_return": 12.5, "command": "x"})
    pol.save(tmp_path / "p")
    back = Policy.load(tmp_path / "p")
    assert back.meta["eval_return"] == 12.5 and back.meta["obs_dim"] == 4
    o = np.linspace(-1, 1, 4)
    np.testing.assert_allclose(back.act(o), pol.act(o), rtol=1e-6)
    np.testing.assert_allclose(back.act(o, np.random.default_rng(0)),
                               pol.act(o, np.random.default_rng(0)), rtol=1e-6)
    with pytest.raises(FileExistsError):
        pol.save(tmp_path / "p")
