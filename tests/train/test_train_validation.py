"""Config checks that need the dataset (trainer.build): whole-episode windows must hold whole
episodes, and Decision Mamba's recurrent inference needs whole-episode training."""

import pytest
from runner_configs import tiny_config

from s4dm_jax.train.trainer import ConfigError, build, train_and_evaluate

LONGEST_EMBEDDED_EPISODE = 856  # steps (s4dm/hopper/medium-mini-v0)


def test_whole_episode_windows_shorter_than_the_longest_episode_are_refused(tmp_path):
    config = tiny_config("s4dm", **{"model.context_len": 100})
    assert config.episode_start_windows
    with pytest.raises(ConfigError, match=rf"longest training episode \({LONGEST_EMBEDDED_EPISODE} "
                                          rf"steps\).*context_len={LONGEST_EMBEDDED_EPISODE}"):
        train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything is written or trained
    _, sampler, model = build(tiny_config("s4dm", **{"model.context_len": 856}))
    assert sampler.longest_episode == LONGEST_EMBEDDED_EPISODE == model.context_len
    # DT-style windows starting anywhere may be shorter than an episode, with window inference;
    # S4DM's default recurrent inference would run its state past what it trained on
    short = {"model.context_len": 20, "episode_start_windows": False}
    with pytest.raises(ConfigError, match=r"inference='recurrent'.*episode_start_windows=False"):
        build(tiny_config("s4dm", **short))
    build(tiny_config("s4dm", **short, **{"model.inference": "window"}))


def test_recurrent_mamba_needs_whole_episode_training(tmp_path):
    config = tiny_config("mamba", **{"model.inference": "recurrent"})
    assert not config.episode_start_windows
    with pytest.raises(ConfigError, match=r"inference='recurrent'.*episode_start_windows=False"):
        train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)
    assert not (tmp_path / "run").exists()
    whole = {"model.inference": "recurrent", "episode_start_windows": True}
    with pytest.raises(ConfigError, match="longest training episode"):
        build(tiny_config("mamba", **whole))  # whole episodes, but K = 8 cannot hold them
    _, _, model = build(tiny_config("mamba", **whole, **{"model.context_len": 1000}))
    assert model.requires_whole_episode_training
    _, _, model = build(tiny_config("mamba"))  # the default: window inference, K-step windows
    assert model.config["inference"] == "window" and not model.requires_whole_episode_training


def test_bad_model_and_top_fraction_fields_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="inference"):
        build(tiny_config("mamba", **{"model.inference": "growing"}))
    with pytest.raises(ConfigError, match="activation"):
        build(tiny_config("dt", **{"model.activation": "swish"}))
    with pytest.raises(ConfigError, match="top_fraction_by"):
        train_and_evaluate(tiny_config("bc", top_fraction_by="returns"), str(tmp_path / "run"),
                           show_progress=False)
