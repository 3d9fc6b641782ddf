"""The evaluator refuses a recurrent-state model that was not trained on whole episodes."""

import jax
import numpy as np
import pytest

from s4dm_jax.evaluate.rollout import EvaluationError, render_episode, rollout
from s4dm_jax.models import make_model

OBS, ACT = 11, 3  # Hopper-v5


def _stacked_params(model):
    params = model.init(jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda x: x[None], params)  # one seed


def _rollout(model, **kwargs):
    return rollout(model, _stacked_params(model), env_id="Hopper-v5",
                   state_mean=np.zeros(OBS, np.float32), state_std=np.ones(OBS, np.float32),
                   rtg_scale=1000.0, targets=[1800.0], episodes=1, max_steps=3, **kwargs)


def test_recurrent_mamba_is_refused_unless_trained_on_whole_episodes(tmp_path):
    small = dict(d_model=8, n_layers=1, d_state=4, context_len=1000)
    recurrent = make_model("mamba", OBS, ACT, inference="recurrent", **small)
    with pytest.raises(EvaluationError, match="inference='recurrent'.*whole episodes"):
        _rollout(recurrent)
    with pytest.raises(EvaluationError, match="inference='recurrent'"):
        render_episode(recurrent, recurrent.init(jax.random.PRNGKey(0)),
                       str(tmp_path / "x.gif"), env_id="Hopper-v5", state_mean=np.zeros(OBS),
                       state_std=np.ones(OBS), rtg_scale=1000.0, target=1800.0, max_steps=2)
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
