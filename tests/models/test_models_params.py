"""Parameter counts of the default configs (hand-derived formulas), the SSM mask on whole models,
and the markdown parameter table."""

import jax
import pytest

from s4dm_jax.models import DEFAULTS, make_model, model_param_count, param_table
from s4dm_jax.nn import ssm_param_mask


def dense(i, o):
    return i * o + o


def dt_count(obs, act, h=128, layers=3, max_ep_len=1000):
    block = 2 * 2 * h + dense(h, 3 * h) + dense(h, h) + dense(h, 4 * h) + dense(4 * h, h)
    embeds = max_ep_len * h + dense(1, h) + dense(obs, h) + dense(act, h)
    return embeds + 2 * h + layers * block + 2 * h + dense(h, act)


def s4dm_count(obs, act, h, n_state, layers, n_ssm=1, rank=1):
    m = n_state // 2
    ssm = n_ssm * (2 * m + 2 * rank * m + 2 * m) + 2 * h * m + h + h  # Lambda P B, C, D, log_dt
    block = 2 * h + ssm + dense(h, 2 * h)
    embeds = dense(1, h) + dense(obs, h) + dense(act, h) + dense(3 * h, h) + 2 * h
    return embeds + layers * block + 2 * h + dense(h, act)


def mamba_count(obs, act, h=128, layers=3, n=16, d_conv=4, expand=2, max_ep_len=1000):
    e, r = expand * h, -(-h // 16)
    mixer = h * 2 * e + d_conv * e + e + e * (r + 2 * n) + dense(r, e) + e * n + e + e * h
    block = 2 * 2 * h + mixer + dense(h, 4 * h) + dense(4 * h, h)
    embeds = max_ep_len * h + dense(1, h) + dense(obs, h) + dense(act, h)
    return embeds + 2 * h + layers * block + 2 * h + dense(h, act)


def bc_count(obs, act):
    return dense(obs, 256) + dense(256, 256) + dense(256, act)


@pytest.mark.parametrize("obs,act", [(11, 3), (17, 6)])
def test_default_param_counts(obs, act):
    dt = model_param_count("dt", obs, act)
    assert dt == dt_count(obs, act)
    s4 = DEFAULTS["s4dm"]
    assert model_param_count("s4dm", obs, act) == s4dm_count(
        obs, act, s4["d_model"], s4["ssm"]["d_state"], s4["n_layers"])
    assert model_param_count("mamba", obs, act) == mamba_count(obs, act)
    assert model_param_count("bc", obs, act) == bc_count(obs, act)


def test_dt_and_s4dm_sizes_on_hopper():
    dt = model_param_count("dt", 11, 3)
    assert dt == 726_019  # "about 0.73M" (REFERENCE section 2)
    s4 = model_param_count("s4dm", 11, 3)
    assert s4 <= 0.15 * dt  # the seed reports 86% fewer parameters than DT


def test_ssm_mask_on_models():
    s4 = make_model("s4dm", 11, 3, d_model=4, ssm=dict(d_state=4), n_layers=3)
    mask = ssm_param_mask(s4.init(jax.random.PRNGKey(0)))
    flagged = [p for p, v in jax.tree_util.tree_leaves_with_path(mask) if v]
    assert len(flagged) == 7  # the 3 layers' parameters are stacked (nn.scan)
    for name in ("dt", "mamba", "bc"):
        m = make_model(name, 11, 3, **({} if name == "bc" else {"d_model": 8, "n_layers": 1}))
        assert not any(jax.tree_util.tree_leaves(ssm_param_mask(m.init(jax.random.PRNGKey(0)))))


def test_param_table_markdown():
    table = param_table([{"model": "dt", "params": 726019, "ratio": 1.0},
                         {"model": "s4dm", "params": 99555, "ratio": 0.13712}])
    assert table.splitlines() == [
        "| model | params | ratio |",
        "|---|---|---|",
        "| dt | 726,019 | 1 |",
        "| s4dm | 99,555 | 0.137 |",
    ]
    assert param_table([]) == ""
