"""The environment runner against plain gymnasium loops: returns, episode ends (termination vs
truncation), explicit resets that never mix two episodes, step budgets and frames."""

import gymnasium
import numpy as np
import pytest
from counter_env import COUNTER_ID, COUNTER_LIMIT

from s4dm_jax.envs import EnvError, make_env, make_vector_env, run_episodes


def push(speeds):
    """Deterministic policy: copy i adds speeds[i] / 2 to each action dim; records contexts."""
    seen = []

    def policy(obs, ctx):
        seen.append(ctx)
        return np.repeat(np.asarray(speeds, np.float32)[:, None] / 2, 2, axis=1)
    return policy, seen


def hopper_policy(obs, ctx=None):
    """A deterministic function of each row of the observations."""
    obs = np.atleast_2d(obs)
    return (0.8 * np.sin(3.0 * obs[:, 2:5] + obs[:, :1])).astype(np.float32)


def plain_loop(env, policy, seed, episodes):
    """Reference: one env, reset(seed) then reset() between episodes, as gymnasium documents."""
    out = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        rec = {"observations": [obs], "actions": [], "rewards": [], "term": False, "trunc": False}
        while True:
            act = policy(obs)
            obs, r, term, trunc, _ = env.step(act)
            rec["observations"].append(obs)
            rec["actions"].append(act)
            rec["rewards"].append(r)
            if term or trunc:
                rec["term"], rec["trunc"] = term, trunc
                break
        out.append(rec)
        obs, _ = env.reset()
    return out


@pytest.mark.parametrize("env_id", ["Hopper-v5", COUNTER_ID])
def test_episodes_equal_a_plain_gymnasium_loop_per_copy(env_id, tmp_path, monkeypatch):
    if env_id == "Hopper-v5":
        pytest.importorskip("mujoco")
        monkeypatch.chdir(tmp_path)  # mujoco may write MUJOCO_LOG.TXT into the cwd
        policy, n = hopper_policy, 3
    else:
        policy, n = (lambda obs, ctx=None: np.full((len(np.atleast_2d(obs)), 2), 0.3,
                                                   np.float32)), 3
    seed, episodes = 7, 2
    envs = make_vector_env(env_id, n)
    res = run_episodes(envs, policy, seed=seed, episodes_per_env=episodes, keep=("transitions",))
    envs.close()
    assert res.env_index.tolist() == [0, 0, 1, 1, 2, 2]
    for i in range(n):
        ref = plain_loop(make_env(env_id), lambda o: policy(o)[0], seed + i, episodes)
        for k, want in enumerate(ref):
            j = i * episodes + k
            got = res.episodes[j]
            assert res.returns[j] == sum(want["rewards"])  # same additions, same order
            assert res.lengths[j] == len(want["rewards"])
            assert res.terminated[j] == want["term"] and res.truncated[j] == want["trunc"]
            np.testing.assert_array_equal(got["observations"], np.asarray(want["observations"]))
            np.testing.assert_array_equal(got["actions"], np.asarray(want["actions"]))
            np.testing.assert_array_equal(got["rewards"], np.asarray(want["rewards"]))
            assert got["terminations"][:-1].sum() == 0 and got["truncations"][:-1].sum() == 0
    assert res.env_steps == res.lengths.sum()


def test_termination_and_truncation_are_recorded_apart():
    policy, _ = push([0.0, 1.0, 0.2])  # x stays < 0.5 / x > 3 after 3 steps / x < 3 at t = 12
    envs = make_vector_env(COUNTER_ID, 3)
    res = run_episodes(envs, policy, seed=0, episodes_per_env=1)
    assert res.lengths.tolist() == [COUNTER_LIMIT, 3, COUNTER_LIMIT]
    assert res.terminated.tolist() == [False, True, False]  # the env's time limit truncates
    assert res.truncated.tolist() == [True, False, True]
    # the runner's own limit truncates; a terminal state at the same step stays a termination
    res = run_episodes(envs, policy, seed=0, episodes_per_env=1, max_episode_steps=3)
    assert res.lengths.tolist() == [3, 3, 3]
    assert res.terminated.tolist() == [False, True, False]
    assert res.truncated.tolist() == [True, False, True]
    envs.close()


def test_resets_never_mix_episodes_and_contexts_follow_them():
    policy, seen = push([1.0, 0.0])
    envs = make_vector_env(COUNTER_ID, 2)
    res = run_episodes(envs, policy, seed=3, episodes_per_env=3, keep=("transitions",))
    envs.close()
    for j, ep in enumerate(res.episodes):
        obs = ep["observations"]
        k = j % 3
        assert (obs[:, 0] == k + 1).all()  # every observation from this episode's own reset
        np.testing.assert_array_equal(obs[:, 1], np.arange(len(obs)))  # t = 0 .. T, final kept
        np.testing.assert_array_equal(ep["rewards"], 1.0 + obs[1:, 2])
    # contexts: t counts the current episode's steps, prev_reward is 0 at its first obs
    ts = np.stack([c.t for c in seen])
    prev = np.stack([c.prev_reward for c in seen])
    np.testing.assert_array_equal(ts[:4, 0], [0, 1, 2, 0])  # copy 0 terminates after 3 steps
    assert prev[3, 0] == 0.0 and prev[0].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(prev[1:3, 0], res.episodes[0]["rewards"][:2])
    np.testing.assert_array_equal(ts[:, 1], np.arange(len(seen)) % COUNTER_LIMIT)
    assert seen[-1].active.tolist() == [False, True]  # copy 0 parked, copy 1 still running


def test_a_step_budget_cuts_the_last_episode():
    policy, _ = push([0.0])
    counted = []
    envs = make_vector_env(COUNTER_ID, 1)
    res = run_episodes(envs, policy, seed=0, steps_per_env=20, keep=("transitions",),
                       on_steps=counted.append)
    envs.close()
    assert res.lengths.tolist() == [COUNTER_LIMIT, 20 - COUNTER_LIMIT] and sum(counted) == 20
    assert res.truncated.tolist() == [True, True] and not res.terminated.any()
    assert res.episodes[1]["truncations"].tolist() == [False] * 7 + [True]


def test_frames_show_each_episode_from_its_first_to_its_final_state():
    policy, _ = push([1.0])
    envs = make_vector_env(COUNTER_ID, 1, render_mode="rgb_array")
    res = run_episodes(envs, policy, seed=0, episodes_per_env=2, keep=("frames",))
    envs.close()
    for k, frames in enumerate(res.frames):
        assert len(frames) == res.lengths[k] + 1
        assert [int(f[0, 0, 0]) for f in frames] == [k + 1] * len(frames)
        assert [int(f[0, 0, 1]) for f in frames] == list(range(len(frames)))


def test_bad_arguments_are_refused():
    policy, _ = push([0.0])
    envs = make_vector_env(COUNTER_ID, 1)
    with pytest.raises(ValueError, match="exactly one of"):
        run_episodes(envs, policy, seed=0)
    with pytest.raises(ValueError, match="exactly one of"):
        run_episodes(envs, policy, seed=0, episodes_per_env=1, steps_per_env=3)
    for keep in ("frames", ("transitions", "videos")):
        with pytest.raises(ValueError, match="must be a collection of"):
            run_episodes(envs, policy, seed=0, episodes_per_env=1, keep=keep)
    envs.close()
    same_step = make_vector_env(COUNTER_ID, 1,
                                autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="DISABLED"):
        run_episodes(same_step, policy, seed=0, episodes_per_env=1)
    same_step.close()
    with pytest.raises(EnvError, match="cannot create the environment 'NoSuchEnv-v0'"):
        make_vector_env("NoSuchEnv-v0", 2)
    with pytest.raises(EnvError, match=r"actions in \[-1, 1\]"):
        make_env("Pendulum-v1", unit_actions=True)
