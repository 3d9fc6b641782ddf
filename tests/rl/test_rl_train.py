"""Tests of the fast SAC loop (s4dm_jax.rl.train / buffer): vectorised collection, episode-
ordered replay, on-device replay sampling inside the jitted update, batched evaluation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mujoco")

from s4dm_jax.envs import make_vector_env  # noqa: E402
from s4dm_jax.rl import SAC, Policy, ReplayBuffer, SACConfig, split_episodes  # noqa: E402
from s4dm_jax.rl.buffer import (  # noqa: E402
    DeviceReplay,
    EpisodeAssembler,
    replay_insert,
    replay_sample,
)
from s4dm_jax.rl.train import (  # noqa: E402
    SACTrainConfig,
    _collect_chunk,
    evaluate_policy,
    make_env,
    make_vec_env,
    train_sac,
)

ENV = "Hopper-v5"
FIELDS = ReplayBuffer.FIELDS


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mujoco may write MUJOCO_LOG.TXT into the cwd


@pytest.fixture(scope="module")
def policy():
    """An untrained hopper actor (its episodes end within tens of steps)."""
    agent = SAC(11, 3, SACConfig(hidden=(16, 16)))
    return Policy(agent.init(jax.random.PRNGKey(1)).actor_params, 11, 3, (16, 16))


def test_act_batch_uses_the_noise_of_successive_act_calls(policy):
    """Row b gets the draws b successive act calls would; a batch of one equals act bit for
    bit (larger batches may differ from it in the last bits: another matmul shape)."""
    obs = np.random.default_rng(0).normal(size=(4, 11))
    batch = policy.act_batch(obs, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    single = np.stack([policy.act(o, rng) for o in obs])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)
    assert batch.dtype == np.float32
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for o in obs:
        np.testing.assert_array_equal(policy.act_batch(o[None], rng_a)[0], policy.act(o, rng_b))
    mean, log_std = policy.dist(obs)
    eps = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(batch, np.tanh(mean + np.exp(log_std) * eps), rtol=1e-6)
    np.testing.assert_array_equal(policy.act_batch(obs, None), np.tanh(mean))


def test_one_env_collection_equals_the_single_env_loop(policy):
    """num_envs = 1: the same transitions as a plain env loop with Policy.act (old code)."""
    steps, random_steps, seed = 120, 30, 4
    envs = make_vec_env(ENV, 1)
    obs, _ = envs.reset(seed=seed)
    chunk, _, _, ended = _collect_chunk(envs, obs, policy, np.random.default_rng(seed), steps,
                                        random_steps, np.zeros(1))
    env, rng = make_env(ENV), np.random.default_rng(seed)
    o, _ = env.reset(seed=seed)
    ref = {k: [] for k in FIELDS}
    for t in range(steps):
        a = (rng.uniform(-1.0, 1.0, 3).astype(np.float32) if t < random_steps
             else policy.act(o, rng))
        nxt, r, term, trunc, _ = env.step(a)
        for k, v in zip(FIELDS, (o, a, r, nxt, term, trunc), strict=True):
            ref[k].append(v)
        o = env.reset()[0] if term or trunc else nxt
    assert sum(ref["terminated"]) >= 2 and len(ended) == sum(ref["terminated"])
    for k in FIELDS:
        np.testing.assert_array_equal(chunk[k][:, 0], np.asarray(ref[k]).astype(chunk[k].dtype))


def test_vector_collection_equals_separately_seeded_envs(policy):
    """num_envs = 3: copy i is a single env seeded seed + i fed the same actions; the stored
    next_obs at an episode end is the true last observation, not the reset one."""
    n, steps, seed = 3, 80, 11
    envs = make_vec_env(ENV, n)
    obs, _ = envs.reset(seed=seed)
    chunk, _, _, _ = _collect_chunk(envs, obs, policy, np.random.default_rng(0), steps, 10,
                                    np.zeros(n))
    assert chunk["obs"].shape == (steps, n, 11) and chunk["act"].shape == (steps, n, 3)
    for i in range(n):
        env = make_env(ENV)
        o, _ = env.reset(seed=seed + i)
        for t in range(steps):
            np.testing.assert_array_equal(chunk["obs"][t, i], np.float32(o))
            nxt, r, term, trunc, _ = env.step(chunk["act"][t, i])
            np.testing.assert_array_equal(chunk["next_obs"][t, i], np.float32(nxt))
            assert chunk["rew"][t, i] == np.float32(r)
            assert chunk["terminated"][t, i] == term and chunk["truncated"][t, i] == trunc
            o = env.reset()[0] if term or trunc else nxt
        assert chunk["terminated"][:, i].sum() >= 1


def _rows(env_id, steps, ends):
    """Synthetic [steps] rows of one env whose obs encode (env, step); episodes end at ends."""
    obs = np.stack([np.full(2, 100 * env_id + t, np.float32) for t in range(steps)])
    term = np.isin(np.arange(steps), ends)
    return {"obs": obs, "act": obs[:, :1] * 0.5, "rew": obs[:, 0], "next_obs": obs + 0.5,
            "terminated": term, "truncated": np.zeros(steps, bool)}


def test_episode_assembler_writes_whole_episodes_in_the_order_they_end():
    env0, env1 = _rows(0, 10, [2, 8]), _rows(1, 10, [5])
    chunk = {k: np.stack([env0[k], env1[k]], axis=1) for k in FIELDS}  # [T, N, ...]
    buf = ReplayBuffer(2, 1, 20)
    asm = EpisodeAssembler(buf, 2)
    asm.add_chunk({k: v[:4] for k, v in chunk.items()})  # episodes span two chunks
    asm.add_chunk({k: v[4:] for k, v in chunk.items()})
    assert buf.size == 15  # env0 steps 0-2, env1 0-5, env0 3-8 written; the rest pending
    asm.close()
    eps = split_episodes(buf.arrays(close_last=False))
    # completion order: env0 ep (end t=2), env1 ep (t=5), env0 ep (t=8); then unfinished env0, env1
    starts = [(int(e["observations"][0, 0]), len(e["rewards"])) for e in eps]
    assert starts == [(0, 3), (100, 6), (3, 6), (9, 1), (106, 4)]
    for e in eps:  # each episode is one env's consecutive steps
        np.testing.assert_array_equal(np.diff(e["observations"][:-1, 0]), 1)
    assert [bool(e["terminations"][-1]) for e in eps] == [True, True, True, False, False]
    assert [bool(e["truncations"][-1]) for e in eps] == [False, False, False, True, True]
    assert buf.size == 20


def test_device_replay_insert_and_sample_stay_in_the_valid_rows():
    replay = DeviceReplay.zeros(3, 2, 64)
    rows = {"obs": jnp.arange(30.0).reshape(10, 3), "act": jnp.ones((10, 2)),
            "rew": jnp.arange(10.0) + 1.0, "next_obs": jnp.zeros((10, 3)),
            "done": jnp.zeros(10, bool)}
    replay = replay_insert(replay, jnp.asarray(5), rows)
    np.testing.assert_array_equal(replay.obs[5:15], rows["obs"])
    assert float(jnp.abs(replay.rew[:5]).sum()) == 0 and float(jnp.abs(replay.rew[15:]).sum()) == 0
    batch = jax.jit(replay_sample, static_argnums=3)(replay, jnp.asarray(15), jax.random.PRNGKey(0),
                                                     4000)
    assert batch["obs"].shape == (4000, 3) and batch["done"].dtype == jnp.float32
    rew = np.asarray(batch["rew"])
    assert set(np.unique(rew)) == {0.0, *map(float, range(1, 11))}  # rows 0-14, all of them
    # uniform over the 15 valid rows: 5 zero rows -> 1/3 of the draws (4000 draws, +-5 sigma)
    assert abs(np.mean(rew == 0) - 1 / 3) < 5 * np.sqrt(2 / 9 / 4000)


def test_insert_and_train_equals_sequential_single_updates():
    """n updates in one jitted scan with on-device sampling == n separate SAC.update calls on
    batches gathered in numpy from the same indices (key split: batch key, then update)."""
    agent = SAC(3, 2, SACConfig(hidden=(16, 16), batch_size=8))
    state0 = agent.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    data = {"obs": rng.normal(size=(40, 3)), "act": rng.uniform(-1, 1, (40, 2)),
            "rew": rng.normal(size=40), "next_obs": rng.normal(size=(40, 3)),
            "done": (rng.random(40) < 0.2).astype(np.float32)}
    data = {k: np.asarray(v, np.float32) for k, v in data.items()}
    replay = DeviceReplay.zeros(3, 2, 64)
    replay = agent.insert_and_train(state0, replay, 0, {k: v[:30] for k, v in data.items()},
                                    0)[1]
    state, replay, info = agent.insert_and_train(state0, replay, 30,
                                                 {k: v[30:] for k, v in data.items()}, 5)
    ref = state0
    for _ in range(5):
        key, k_batch = jax.random.split(ref.key)
        idx = np.asarray(jax.random.randint(k_batch, (8,), 0, 40))
        ref, ref_info = agent.update(ref._replace(key=key), {k: v[idx] for k, v in data.items()})
    assert int(state.step) == 5
    np.testing.assert_array_equal(state.key, ref.key)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(ref),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(replay.obs[:40], data["obs"])
    assert np.isfinite(float(info["critic_loss"]))


def test_evaluate_policy_runs_episodes_side_by_side(policy):
    """Deterministic returns equal one env per episode reset with seed + i (up to the last
    bits of a batched vs a one-row actor call)."""
    got = evaluate_policy(policy, ENV, 3, seed=21, deterministic=True)
    ref = []
    for i in range(3):
        env = make_env(ENV)
        o, _ = env.reset(seed=21 + i)
        total, done = 0.0, False
        while not done:
            o, r, term, trunc, _ = env.step(policy.act(o, deterministic=True))
            total, done = total + r, term or trunc
        ref.append(total)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    stoch = evaluate_policy(policy, ENV, 3, seed=21)
    np.testing.assert_array_equal(stoch, evaluate_policy(policy, ENV, 3, seed=21))
    with pytest.raises(ValueError, match="side by side"):
        evaluate_policy(policy, ENV, 3, seed=0, envs=make_vector_env(ENV, 1))


TINY = SACTrainConfig(max_steps=240, start_steps=120, update_every=20, eval_every=120,
                      eval_episodes=1, sac=SACConfig(hidden=(16, 16), batch_size=16))


def _tiny(**changes):
    return dataclasses.replace(TINY, **changes)


@pytest.mark.parametrize("num_envs, updates_per_step", [(1, 1.0), (2, 0.5)])
def test_train_sac_keeps_episodes_intact_and_is_reproducible(num_envs, updates_per_step):
    run = _tiny(seed=3, num_envs=num_envs, updates_per_step=updates_per_step)
    runs = [train_sac(ENV, run, progress=False, log=None) for _ in range(2)]
    res = runs[0]
    arr = res.buffer.arrays(close_last=False)
    assert res.env_steps == res.buffer.size == 240
    eps = split_episodes(arr)
    assert sum(len(e["rewards"]) for e in eps) == 240 and len(eps) >= 3
    # consecutive rows of one episode chain: next_obs[t] == obs[t+1] unless row t ends it
    ends = arr["terminated"] | arr["truncated"]
    cont = ~ends[:-1]
    np.testing.assert_array_equal(arr["next_obs"][:-1][cont], arr["obs"][1:][cont])
    assert ends[-1]
    # updates: (240 - 120 + chunk at 120) transitions after start, updates_per_step each
    chunk = 20 * num_envs
    assert int(res.state.step) == round((240 - 120 + chunk) * updates_per_step)
    assert res.policy.meta["num_envs"] == num_envs
    assert res.policy.meta["updates_per_step"] == updates_per_step
    assert set(res.timings) == {"setup", "collect", "update", "eval"}
    other = runs[1]
    for k in FIELDS:
        np.testing.assert_array_equal(arr[k], other.buffer.arrays(close_last=False)[k])
    for a, b in zip(jax.tree_util.tree_leaves(res.state.actor_params),
                    jax.tree_util.tree_leaves(other.state.actor_params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert res.eval_return == other.eval_return


def test_train_sac_rejects_budgets_that_do_not_divide():
    with pytest.raises(ValueError, match="multiple of num_envs"):
        _tiny(num_envs=3, max_steps=100)
    with pytest.raises(ValueError, match="whole number of updates"):
        _tiny(updates_per_step=0.3, update_every=5)
    with pytest.raises(ValueError, match="must be >= 1"):
        _tiny(eval_episodes=0)
