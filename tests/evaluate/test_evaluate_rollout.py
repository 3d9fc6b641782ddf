"""The evaluator refuses a recurrent-state model that was not trained on whole episodes, and
the GIF episode conditions on the return-to-go as the evaluation does."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from counter_env import COUNTER_ID
from runner_configs import tiny_config

from s4dm_jax.envs import runner
from s4dm_jax.evaluate import rollout as evaluation
from s4dm_jax.evaluate.rollout import EvalSettings, EvaluationError, render_episode, rollout
from s4dm_jax.models import make_model
from s4dm_jax.train import trainer

OBS, ACT = 11, 3  # Hopper-v5
HOPPER = EvalSettings(env_id="Hopper-v5", targets=(1800.0,), episodes=1,
                      state_mean=np.zeros(OBS), state_std=np.ones(OBS), rtg_scale=1000.0,
                      max_steps=3)


def _stacked_params(model):
    params = model.init(jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda x: x[None], params)  # one seed


def _rollout(model, show_progress=False, **settings):
    return rollout(model, _stacked_params(model), dataclasses.replace(HOPPER, **settings),
                   show_progress=show_progress)


def test_recurrent_mamba_is_refused_unless_trained_on_whole_episodes(tmp_path):
    small = dict(d_model=8, n_layers=1, d_state=4, context_len=1000)
    recurrent = make_model("mamba", OBS, ACT, inference="recurrent", **small)
    with pytest.raises(EvaluationError, match="inference='recurrent'.*whole episodes"):
        _rollout(recurrent)
    with pytest.raises(EvaluationError, match="inference='recurrent'"):
        render_episode(recurrent, recurrent.init(jax.random.PRNGKey(0)),
                       str(tmp_path / "x.gif"), dataclasses.replace(HOPPER, max_steps=2))
    assert not (tmp_path / "x.gif").exists()
    result = _rollout(recurrent, episode_start_windows=True)
    assert result.returns.shape == (1, 1, 1) and 1 <= result.lengths[0, 0, 0] <= 3
    window = make_model("mamba", OBS, ACT, **small)  # the default inference="window"
    result = _rollout(window)
    assert np.isfinite(result.returns).all()


def test_evaluation_progress_bar_counts_the_env_steps(capsys):
    """show_progress: a bar of the vector steps (at most max_steps), ending at the longest
    episode's length; silent by default."""
    model = make_model("bc", OBS, ACT, hidden_dims=(8,))
    result = _rollout(model, show_progress=True)
    err = capsys.readouterr().err
    assert "evaluate: 1 episodes" in err
    assert f"| {int(result.lengths.max())}/3 " in err
    _rollout(model)
    assert "evaluate" not in capsys.readouterr().err


def test_bad_settings_are_refused():
    with pytest.raises(EvaluationError, match="at least one target"):
        dataclasses.replace(HOPPER, targets=())
    with pytest.raises(EvaluationError, match="episodes >= 1"):
        dataclasses.replace(HOPPER, episodes=0)


def _recorded_rtgs(monkeypatch):
    """Record the return-to-go the policy gives the model at each step, and the rewards."""
    seen = {"rtg": [], "rewards": []}

    def recording(envs, policy, **kwargs):
        def record(obs, ctx):
            actions = policy(obs, ctx)
            seen["rtg"].append(float(policy.rtg[0, 0]))
            return actions
        keep = (*kwargs.pop("keep", ()), "transitions")
        result = runner.run_episodes(envs, record, keep=keep, **kwargs)
        seen["rewards"] = result.episodes[0]["rewards"]
        return result
    monkeypatch.setattr(evaluation, "run_episodes", recording)
    return seen


@pytest.mark.parametrize("delayed", [True, False])
def test_gif_episode_follows_the_evaluations_return_to_go(delayed, monkeypatch, tmp_path):
    """With delayed_reward the GIF's return-to-go stays at target/rtg_scale; otherwise it drops
    by reward/rtg_scale each step (before settings, the GIF always dropped it)."""
    seen = _recorded_rtgs(monkeypatch)
    model = make_model("bc", 3, 2, hidden_dims=(8,))
    settings = EvalSettings(env_id=COUNTER_ID, targets=(5.0, 9.0), episodes=2,
                            state_mean=np.zeros(3), state_std=np.ones(3), rtg_scale=2.0,
                            max_steps=9, delayed_reward=delayed, seed=2)
    ret = render_episode(model, model.init(jax.random.PRNGKey(0)), str(tmp_path / "x.gif"),
                         settings)
    rewards = np.asarray(seen["rewards"], np.float64)
    assert len(seen["rtg"]) == len(rewards) >= 2 and np.all(rewards != 0.0)
    np.testing.assert_allclose(ret, rewards.sum())
    spent = 0.0 if delayed else np.concatenate([[0.0], np.cumsum(rewards[:-1])])
    np.testing.assert_allclose(seen["rtg"], (5.0 - spent) / 2.0 * np.ones(len(rewards)),
                               rtol=1e-6)


def test_the_runs_gif_gets_the_evaluations_settings(monkeypatch, tmp_path):
    """train_and_evaluate renders its GIF with the final evaluation's settings (delayed_reward
    and env seed included: the GIF is its first episode)."""
    calls = {}
    monkeypatch.setattr(trainer, "rollout", lambda model, params, settings, **kw: (
        calls.setdefault("rollout", settings), rollout(model, params, settings, **kw))[1])
    monkeypatch.setattr(trainer, "render_episode", lambda model, params, path, settings: (
        calls.setdefault("gif", settings), 0.0)[1])
    config = tiny_config("bc", delayed_reward=True, **{"eval.gif": True})
    trainer.train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)
    evaluated, gif = calls["rollout"], calls["gif"]
    assert gif.delayed_reward and evaluated.delayed_reward
    for field in dataclasses.fields(EvalSettings):
        np.testing.assert_array_equal(getattr(gif, field.name), getattr(evaluated, field.name))


def test_gif_episode_is_the_first_evaluated_episode(tmp_path):
    """Same settings, same parameters: the GIF's return is that of episode 0 of seed 0 at the
    first target (env copy 0, reset with settings.seed)."""
    model = make_model("bc", 3, 2, hidden_dims=(8,))
    params = model.init(jax.random.PRNGKey(3))
    settings = EvalSettings(env_id=COUNTER_ID, targets=(5.0, 9.0), episodes=3,
                            state_mean=np.zeros(3), state_std=np.ones(3), rtg_scale=2.0,
                            max_steps=9, seed=7)
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, x + 0.5]), params)
    evaluated = rollout(model, stacked, settings)
    ret = render_episode(model, params, str(tmp_path / "x.gif"), settings)
    np.testing.assert_allclose(ret, evaluated.returns[0, 0, 0], rtol=1e-6)
    assert len(set(np.round(evaluated.returns[0, 0], 6))) > 1  # episodes differ: a real check
