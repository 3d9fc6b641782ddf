"""T-Maze (Passive / Active) logic step by step, the oracle policy's 100% success, a policy
that walks to the junction and turns at random (~50%, binomial bound) and the registered ids;
velocity-masked MuJoCo observations equal the full-state env's position columns."""

import gymnasium
import numpy as np
import pytest

from s4dm_jax.envs import make_env, make_vector_env, run_episodes, validate_env_id
from s4dm_jax.envs.masked import MASKED_IDS, POSITION_COLUMNS
from s4dm_jax.envs.tmaze import (
    DOWN,
    LEFT,
    REGISTERED_LENGTHS,
    RIGHT,
    UP,
    TMazeEnv,
    oracle_action,
    tmaze_env_id,
)


def test_passive_tmaze_step_by_step():
    env = TMazeEnv(3, "passive")
    obs, info = env.reset(seed=0)
    goal = info["goal"]
    assert goal in (-1, 1) and env.episode_length == 4
    np.testing.assert_array_equal(obs, [0, goal])  # the cue, at t = 0 only
    obs, r, term, trunc, info = env.step(UP)  # wall: stays on the oracle, cue not shown again
    np.testing.assert_array_equal(obs, [0, 0])
    assert (r, term, trunc) == (0.0, False, False) and "success" not in info
    obs, *_ = env.step(RIGHT)
    np.testing.assert_array_equal(obs, [0, 0])
    obs, *_ = env.step(RIGHT)
    np.testing.assert_array_equal(obs, [0, 0])  # x = 2 < junction 3
    obs, r, term, trunc, info = env.step(RIGHT)  # last step: reaches the junction, too late
    np.testing.assert_array_equal(obs, [1, 0])
    assert (r, term, trunc, info["success"]) == (0.0, True, False, False)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(RIGHT)


@pytest.mark.parametrize("turn_right", [True, False])
def test_passive_tmaze_reward_only_on_the_goal_at_the_end(turn_right):
    env = TMazeEnv(2, "passive")
    _, info = env.reset(seed=3)
    goal = info["goal"]
    for _ in range(2):
        obs, r, term, *_ = env.step(RIGHT)
        assert r == 0.0 and not term
    np.testing.assert_array_equal(obs, [1, 0])
    turn = (UP if goal > 0 else DOWN) if turn_right else (DOWN if goal > 0 else UP)
    obs, r, term, trunc, info = env.step(turn)
    assert term and not trunc and info["success"] is turn_right and r == float(turn_right)
    np.testing.assert_array_equal(obs, [1, goal if turn_right else -goal])


def test_active_tmaze_needs_a_step_left_to_see_the_cue():
    env = TMazeEnv(2, "active")
    obs, info = env.reset(seed=1)
    goal = info["goal"]
    assert env.episode_length == 5 and env.junction_x == 3
    np.testing.assert_array_equal(obs, [0, 0])  # starts at x = 1: no cue
    obs, *_ = env.step(LEFT)
    np.testing.assert_array_equal(obs, [0, goal])
    obs, *_ = env.step(LEFT)  # wall at x < 0; the cue is shown once
    np.testing.assert_array_equal(obs, [0, 0])
    assert env.x == 0
    for a in (RIGHT, RIGHT):
        obs, r, term, *_ = env.step(a)
    assert env.x == 2 and not term  # the detour cost a step: junction not reached
    obs, r, term, _, info = env.step(UP)  # wall (not at the junction)
    assert term and r == 0.0 and not info["success"]


def test_walls_and_bad_input():
    env = TMazeEnv(1, "passive")
    env.reset(seed=0)
    env.step(RIGHT)
    assert env.x == 1
    env.x, env.t = 1, 0
    env.step(RIGHT)  # past the junction: wall
    assert env.x == 1
    with pytest.raises(ValueError, match="0..3"):
        env.step(4)
    with pytest.raises(ValueError, match="kind"):
        TMazeEnv(5, "other")
    with pytest.raises(ValueError, match="corridor_length"):
        TMazeEnv(0)


class MemoryPolicy:
    """Remembers each copy's cue; walks like the oracle; at the junction turns to the cue
    (oracle) or at random (`rng`)."""

    def __init__(self, kind, length, n, rng=None):
        self.kind, self.length, self.rng = kind, length, rng
        self.cue = np.zeros(n, int)

    def __call__(self, obs, ctx):
        seen = (obs[:, 0] == 0) & (obs[:, 1] != 0)
        self.cue = np.where(ctx.t == 0, 0, self.cue)
        self.cue = np.where(seen, obs[:, 1].astype(int), self.cue)
        goal = self.cue if self.rng is None else self.rng.choice([-1, 1], len(obs))
        return np.array([oracle_action(self.kind, self.length, int(t), int(g))
                         for t, g in zip(ctx.t, goal, strict=True)])


@pytest.mark.parametrize("kind", ["passive", "active"])
@pytest.mark.parametrize("length", [1, 10, 100])
def test_oracle_succeeds_always_and_a_random_turn_half_the_time(kind, length):
    env_id = tmaze_env_id(kind, length)
    n, per = 8, 25
    envs = make_vector_env(validate_env_id(env_id, explicit=False, where="test"), n)
    oracle = run_episodes(envs, MemoryPolicy(kind, length, n), seed=0, episodes_per_env=per)
    assert len(oracle.returns) == n * per
    assert np.all(oracle.returns == 1.0) and np.all(oracle.terminated)
    assert np.all(oracle.lengths == length + (1 if kind == "passive" else 3))
    coin = run_episodes(envs, MemoryPolicy(kind, length, n, np.random.default_rng(0)), seed=1,
                        episodes_per_env=per)
    envs.close()
    # 200 turns with p = 1/2: |rate - 1/2| <= 4 sd = 4 * sqrt(0.25 / 200) = 0.141 (two-sided
    # binomial tail < 1e-4); the same seeds give the same rate every run
    rate = coin.returns.mean()
    assert set(np.unique(coin.returns)) <= {0.0, 1.0}
    assert abs(rate - 0.5) <= 4 * np.sqrt(0.25 / (n * per))
    # and the goal side itself is fair: the cue of 200 resets
    env = TMazeEnv(length, kind)
    goals = [env.reset(seed=s)[1]["goal"] for s in range(n * per)]
    assert abs(np.mean(np.array(goals) > 0) - 0.5) <= 4 * np.sqrt(0.25 / (n * per))


def test_uniform_random_policy_rarely_reaches_the_junction():
    """A uniformly random policy succeeds with probability 4^-(L+1) in the passive maze (L
    rights, then the goal's turn): L = 1 gives 1/16; binomial bound over 1600 episodes."""
    env = TMazeEnv(1, "passive")
    rng, wins, n = np.random.default_rng(0), 0, 1600
    for s in range(n):
        env.reset(seed=s)
        done = False
        while not done:
            _, r, done, _, _ = env.step(int(rng.integers(4)))
        wins += r
    assert abs(wins / n - 1 / 16) <= 4 * np.sqrt(1 / 16 * 15 / 16 / n)


def test_ids_are_registered_and_recreate_the_env():
    for length in REGISTERED_LENGTHS:
        for kind in ("passive", "active"):
            env_id = f"s4dm_jax/TMaze{kind.capitalize()}-L{length}-v0"
            assert env_id in gymnasium.registry
            env = make_env(env_id)
            assert (env.unwrapped.corridor_length, env.unwrapped.kind) == (length, kind)
            env.close()
    # any other length: the id is registered when data names it (nothing imported)
    assert validate_env_id("s4dm_jax/TMazeActive-L77-v0", explicit=False, where="t")
    assert make_env("s4dm_jax/TMazeActive-L77-v0").unwrapped.corridor_length == 77
    assert tmaze_env_id("passive", 42) == "s4dm_jax/TMazePassive-L42-v0"


@pytest.mark.parametrize("base", sorted(POSITION_COLUMNS))
def test_masked_env_is_the_full_env_without_velocities(base):
    pytest.importorskip("mujoco")
    masked, full = make_env(MASKED_IDS[base]), make_env(base)
    keep = list(POSITION_COLUMNS[base])
    assert masked.observation_space.shape == (len(keep),)
    assert masked.spec.max_episode_steps == full.spec.max_episode_steps == 1000
    om, _ = masked.reset(seed=4)
    of, _ = full.reset(seed=4)
    np.testing.assert_array_equal(om, of[keep])
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, full.action_space.shape).astype(np.float32)
        om, rm, *_ = masked.step(a)
        of, rf, *_ = full.step(a)
        np.testing.assert_array_equal(om, of[keep])
        assert rm == rf
    # the kept columns are qpos[1:]; the dropped ones qvel
    np.testing.assert_allclose(om, full.unwrapped.data.qpos[1:], rtol=1e-6)
    masked.close()
    full.close()
