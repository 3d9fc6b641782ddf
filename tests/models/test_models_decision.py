"""Decision models: step path == training path, causality, masking, discrete actions,
DT initialisation and activation as the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s4dm_jax.models import DEFAULTS, make_model

OBS, ACT, NACT = 5, 2, 4

SMALL = {
    "s4dm": dict(d_model=8, ssm=dict(d_state=8), n_layers=2, context_len=10),
    "s4dm_interleaved": dict(d_model=8, ssm=dict(d_state=8), n_layers=2, context_len=10,
                             token_layout="interleaved", timestep_embedding=True),
    "s4dm_diag": dict(d_model=8, n_layers=2, context_len=10,
                      ssm=dict(d_state=8, mode="diag", init="diag-lin", discretization="zoh")),
    "dt": dict(d_model=16, n_layers=2, n_heads=2, context_len=6),
    "mamba": dict(d_model=8, n_layers=2, d_state=4, context_len=10),
    "mamba_recurrent": dict(d_model=8, n_layers=2, d_state=4, context_len=10,
                            inference="recurrent"),
    "bc": dict(hidden_dims=(16, 16)),
    "s4dm_window": dict(d_model=8, ssm=dict(d_state=8), n_layers=2, context_len=6,
                        inference="window"),
}
# keys whose training call differs (mamba_recurrent and s4dm_window only change `step`)
TRAINING_KEYS = [k for k in SMALL if k not in ("mamba_recurrent", "s4dm_window")]


def _make(key, discrete=False):
    name = key.split("_")[0]
    return make_model(name, OBS, NACT if discrete else ACT, discrete=discrete, **SMALL[key])


def random_episode(rng, length, discrete=False, batch=2):
    """Random (unnormalised-looking) inputs of one episode for a batch: dict of [B, T, ...]."""
    k = jax.random.split(rng, 3)
    if discrete:
        actions = jax.random.randint(k[2], (batch, length), 0, NACT)
    else:
        actions = jax.random.uniform(k[2], (batch, length, ACT), minval=-1, maxval=1)
    return {"rtg": jax.random.normal(k[0], (batch, length)),
            "states": jax.random.normal(k[1], (batch, length, OBS)),
            "actions": actions,
            "timesteps": jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length)),
            "mask": jnp.ones((batch, length))}


def run_steps(model, params, ep):
    """Feed an episode through `step` one env step at a time; outputs [B, T, act]."""
    b, length = ep["rtg"].shape
    step = jax.jit(model.step)
    params = model.prepare_step(params)
    carry = model.init_carry(b)
    outs = []
    for t in range(length):
        a_prev = (ep["actions"][:, t - 1] if t > 0 else jnp.zeros_like(ep["actions"][:, 0]))
        carry, out = step(params, carry, ep["rtg"][:, t], ep["states"][:, t], a_prev,
                          ep["timesteps"][:, t])
        outs.append(np.asarray(out))
    return np.stack(outs, 1)


@pytest.mark.parametrize("key", ["s4dm", "s4dm_interleaved", "s4dm_diag", "mamba_recurrent",
                                 "bc"])
@pytest.mark.parametrize("discrete", [False, True])
def test_recurrent_step_reproduces_training_call(key, discrete):
    model = _make(key, discrete)
    params = model.init(jax.random.PRNGKey(0))
    length = 10
    ep = random_episode(jax.random.PRNGKey(1), length, discrete)
    preds = np.asarray(model.apply(params, ep))
    assert preds.shape == (2, length, NACT if discrete else ACT)
    stepped = run_steps(model, params, ep)
    scale = max(np.abs(preds).max(), 1e-3)
    assert np.abs(stepped - preds).max() <= 1e-4 * scale


@pytest.mark.parametrize("key", ["dt", "mamba", "s4dm_window"])  # re-run on the last K steps
@pytest.mark.parametrize("discrete", [False, True])
def test_windowed_step_equals_training_call_on_last_k_steps(key, discrete):
    """At every t (t < K: left-padded window; t >= K: the last K steps) the step output equals
    the training call on the window [t-K+1, t], padded as the sampler pads."""
    model = _make(key, discrete)
    k = model.context_len
    params = model.init(jax.random.PRNGKey(0))
    length = 2 * k + 3
    ep = random_episode(jax.random.PRNGKey(2), length, discrete)
    stepped = run_steps(model, params, ep)
    apply = jax.jit(model.apply)
    for t in range(length):
        lo = max(0, t + 1 - k)
        win = jax.tree_util.tree_map(lambda x, lo=lo, t=t: x[:, lo:t + 1], ep)
        pad = k - (t + 1 - lo)

        def left_pad(x, value=0, pad=pad):
            return jnp.pad(x, ((0, 0), (pad, 0)) + ((0, 0),) * (x.ndim - 2),
                           constant_values=value)

        # left padding as the DT reference writes it (states 0, actions -10, rtg 0, mask 0)
        padded = {"rtg": left_pad(win["rtg"]), "states": left_pad(win["states"]),
                  "actions": left_pad(win["actions"], -10), "timesteps": left_pad(win["timesteps"]),
                  "mask": left_pad(win["mask"])}
        preds = np.asarray(apply(params, padded))
        np.testing.assert_allclose(stepped[:, t], preds[:, -1], atol=1e-5)


@pytest.mark.parametrize("key", TRAINING_KEYS)
def test_models_are_causal(key):
    model = _make(key)
    params = model.init(jax.random.PRNGKey(0))
    k = model.context_len if key != "bc" else 6
    ep = random_episode(jax.random.PRNGKey(3), k)
    preds = np.asarray(model.apply(params, ep))
    t = k // 2
    bumped = dict(ep)
    bumped["rtg"] = ep["rtg"].at[:, t + 1:].add(1.0)
    bumped["states"] = ep["states"].at[:, t + 1:].add(1.0)
    bumped["actions"] = ep["actions"].at[:, t:].multiply(-0.5)  # a_t may not influence preds[t]
    preds2 = np.asarray(model.apply(params, bumped))
    np.testing.assert_allclose(preds2[:, :t + 1], preds[:, :t + 1], atol=1e-5)
    if key != "bc":
        assert np.abs(preds2[:, t + 1:] - preds[:, t + 1:]).max() > 1e-4


@pytest.mark.parametrize("key", ["s4dm", "s4dm_interleaved", "dt", "mamba"])
def test_left_padding_is_invisible(key):
    """A left-padded window predicts the same on its real steps as the unpadded one."""
    model = _make(key)
    params = model.init(jax.random.PRNGKey(0))
    k, pad = model.context_len, 3
    ep = random_episode(jax.random.PRNGKey(4), k - pad)
    full = np.asarray(jax.jit(model.apply)(params, ep))
    padded = {
        "rtg": jnp.pad(ep["rtg"], ((0, 0), (pad, 0)), constant_values=5.0),
        "states": jnp.pad(ep["states"], ((0, 0), (pad, 0), (0, 0)), constant_values=3.0),
        "actions": jnp.pad(ep["actions"], ((0, 0), (pad, 0), (0, 0)), constant_values=-10),
        "timesteps": jnp.pad(ep["timesteps"], ((0, 0), (pad, 0))),
        "mask": jnp.pad(ep["mask"], ((0, 0), (pad, 0))),
    }
    preds = np.asarray(model.apply(params, padded))
    np.testing.assert_allclose(preds[:, pad:], full, atol=1e-5)


@pytest.mark.parametrize("key", TRAINING_KEYS)
@pytest.mark.parametrize("discrete", [False, True])
def test_loss_is_masked_and_matches_numpy(key, discrete):
    model = _make(key, discrete)
    params = model.init(jax.random.PRNGKey(0))
    k = model.context_len if key != "bc" else 5
    ep = random_episode(jax.random.PRNGKey(5), k, discrete)
    mask = np.ones((2, k), np.float32)
    mask[0, :2] = 0
    ep["mask"] = jnp.asarray(mask)
    loss, metrics = model.loss(params, ep, jax.random.PRNGKey(0), train=False)
    preds = np.asarray(model.apply(params, ep), np.float64)
    acts = np.asarray(ep["actions"])
    if discrete:
        assert preds.shape == (2, k, NACT)
        logp = preds - np.log(np.exp(preds).sum(-1, keepdims=True))
        nll = -np.take_along_axis(logp, acts[..., None], -1)[..., 0]
        ref = (nll * mask).sum() / mask.sum()
        assert "accuracy" in metrics
    else:
        ref = (((preds - acts) ** 2).sum(-1) * mask).sum() / (mask.sum() * ACT)
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    # whole-episode windows: each window's mean over its real steps, then the mean over windows
    per_step = nll if discrete else ((preds - acts) ** 2).mean(-1)
    ref_windows = ((per_step * mask).sum(1) / mask.sum(1)).mean()
    loss_windows, _ = model.loss(params, ep, jax.random.PRNGKey(0), train=False, per_window=True)
    np.testing.assert_allclose(float(loss_windows), ref_windows, rtol=1e-5)
    assert abs(ref_windows - ref) > 1e-6 * abs(ref)  # the two averages differ here
    # padding targets do not change the loss
    if discrete:
        ep["actions"] = ep["actions"].at[0, :2].set(-10)
    else:
        ep["actions"] = ep["actions"].at[0, :2].set(-10.0)
    loss2, _ = model.loss(params, ep, jax.random.PRNGKey(0), train=False)
    np.testing.assert_allclose(float(loss2), float(loss), rtol=1e-5)
    # training mode with dropout gives a finite loss and finite gradients
    grads = jax.grad(lambda p: model.loss(p, ep, jax.random.PRNGKey(1), train=True)[0])(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))


def test_make_model_validates_kwargs_and_exposes_defaults():
    for name, defaults in DEFAULTS.items():
        assert "context_len" in defaults
        model = make_model(name, OBS, ACT)
        assert model.name == name and model.context_len == defaults["context_len"]
        assert model.config == {**defaults,
                                **({"hidden_dims": tuple(defaults["hidden_dims"])}
                                   if name == "bc" else {})}
    with pytest.raises(TypeError, match="accepted"):
        make_model("dt", OBS, ACT, not_a_field=1)
    with pytest.raises(ValueError, match="unknown model"):
        make_model("gpt", OBS, ACT)
    with pytest.raises(ValueError, match="token_layout"):
        make_model("s4dm", OBS, ACT, token_layout="weird", n_layers=1, ssm=dict(d_state=4),
                   d_model=4).init(jax.random.PRNGKey(0))


def _std_tolerance(n, excess_kurtosis):
    """5 standard errors of a sample std (relative), n samples of the given excess kurtosis."""
    return 5 * np.sqrt((excess_kurtosis + 2) / (4 * n))


def test_dt_initialisation_matches_the_kzl_reference():
    """GPT-2 blocks: N(0, 0.02) weights, zero biases, LayerNorm 1/0 (kzl's GPT-2 _init_weights, no
    residual rescaling); the DT's own embeddings and head: PyTorch defaults (Linear weight and
    bias U(+-1/sqrt(fan_in)), Embedding N(0, 1))."""
    h, n_layers, max_ep_len = 64, 2, 500
    model = make_model("dt", OBS, ACT, d_model=h, n_layers=n_layers, max_ep_len=max_ep_len)
    p = jax.tree_util.tree_map(np.asarray, model.init(jax.random.PRNGKey(0))["params"])
    for i in range(n_layers):
        blk = p[f"blocks_{i}"]
        attn = blk["attn"]
        for dense in (attn["query"], attn["key"], attn["value"], attn["out"], blk["fc"],
                      blk["fc_out"]):
            w = dense["kernel"]
            assert abs(w.std() / 0.02 - 1) < _std_tolerance(w.size, 0.0)
            assert abs(w.mean()) < 5 * 0.02 / np.sqrt(w.size)
            np.testing.assert_array_equal(dense["bias"], 0.0)
        for ln in (blk["ln_1"], blk["ln_2"]):
            np.testing.assert_array_equal(ln["scale"], 1.0)
            np.testing.assert_array_equal(ln["bias"], 0.0)
    for ln in (p["embed_ln"], p["ln_f"]):
        np.testing.assert_array_equal(ln["scale"], 1.0)
        np.testing.assert_array_equal(ln["bias"], 0.0)
    emb = p["embed"]
    for dense, fan_in in ((emb["embed_return"], 1), (emb["embed_state"], OBS),
                          (emb["embed_action"], ACT), (p["head"], h)):
        bound = 1 / np.sqrt(fan_in)
        for x in (dense["kernel"], dense["bias"]):
            assert np.abs(x).max() <= bound
            # uniform on [-b, b]: std b / sqrt(3), excess kurtosis -1.2
            assert abs(x.std() / (bound / np.sqrt(3)) - 1) < _std_tolerance(x.size, -1.2)
    te = emb["embed_timestep"]["embedding"]
    assert te.shape == (max_ep_len, h)
    assert abs(te.std() - 1) < _std_tolerance(te.size, 0.0)


def test_dt_activation_is_a_config_field_defaulting_to_relu():
    assert DEFAULTS["dt"]["activation"] == "relu"  # kzl's experiment.py
    ep = random_episode(jax.random.PRNGKey(6), 6)
    outs = {}
    for act in ("relu", "gelu", "gelu_tanh"):
        model = make_model("dt", OBS, ACT, activation=act, **SMALL["dt"])
        params = model.init(jax.random.PRNGKey(0))  # same parameters for every activation
        outs[act] = np.asarray(model.apply(params, ep))
    assert np.abs(outs["relu"] - outs["gelu"]).max() > 1e-6
    assert np.abs(outs["gelu"] - outs["gelu_tanh"]).max() > 0
    with pytest.raises(ValueError, match="activation"):
        make_model("dt", OBS, ACT, activation="swish")
    with pytest.raises(ValueError, match="inference"):
        make_model("mamba", OBS, ACT, inference="growing")


# Mixed precision (compute_dtype="bfloat16"): bfloat16 network, float32 SSM parameters, S4
# kernel/convolution, Mamba scan and softmax; float32 outputs and gradients; step == call.
# Measured at these sizes: bf16 vs f32 predictions within ~2e-2 of their scale, a bf16 model's
# step within ~3e-2 of its own training call; asserted: 6e-2 and 8e-2.
@pytest.mark.parametrize("key", ["s4dm", "dt", "mamba", "mamba_recurrent", "bc"])
def test_mixed_precision_bfloat16_model_tracks_float32_and_steps_like_its_call(key):
    name = key.split("_")[0]
    f32 = make_model(name, OBS, ACT, **SMALL[key])
    bf16 = make_model(name, OBS, ACT, **SMALL[key], compute_dtype="bfloat16")
    params = f32.init(jax.random.PRNGKey(0))
    ep = random_episode(jax.random.PRNGKey(1), 10)
    p32, p16 = np.asarray(f32.apply(params, ep)), bf16.apply(params, ep)
    assert p16.dtype == np.float32
    scale = max(np.abs(p32).max(), 1e-3)
    assert np.abs(np.asarray(p16) - p32).max() <= 6e-2 * scale
    if key != "bc":
        stepped = run_steps(bf16, params, ep)
        assert np.abs(stepped - np.asarray(p16)).max() <= 8e-2 * scale
    grads = jax.grad(lambda p: bf16.loss(p, ep, jax.random.PRNGKey(2))[0])(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(g.dtype == np.float32 and np.all(np.isfinite(g)) for g in leaves)


def _dot_dtypes(jaxpr) -> list[str]:
    """Output dtypes of every dot_general in a jaxpr, sub-jaxprs (scan, remat, custom VJPs)
    included, in program order."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append(str(eqn.outvars[0].aval.dtype))
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    out += _dot_dtypes(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    out += _dot_dtypes(sub)
    return out


@pytest.mark.parametrize("key", ["s4dm", "dt", "mamba", "bc"])
def test_mixed_precision_matmuls_run_in_bfloat16(key):
    """Under compute_dtype="bfloat16" the network's matmuls run in bfloat16, in training and in
    `step`; float32 only inside the islands (S4 kernel and convolution, the Mamba scan). (A
    float32 cast of the inputs or of the softmax output used to promote everything after it.)"""
    name = key.split("_")[0]
    model = make_model(name, OBS, ACT, **SMALL[key], compute_dtype="bfloat16")
    params = model.init(jax.random.PRNGKey(0))
    ep = random_episode(jax.random.PRNGKey(1), 10)
    train = _dot_dtypes(jax.make_jaxpr(lambda p: model.apply(p, ep))(params).jaxpr)
    prepared, carry = model.prepare_step(params), model.init_carry(ep["rtg"].shape[0])
    step = _dot_dtypes(jax.make_jaxpr(lambda p, c: model.step(
        p, c, ep["rtg"][:, 0], ep["states"][:, 0], jnp.zeros_like(ep["actions"][:, 0]),
        ep["timesteps"][:, 0]))(prepared, carry).jaxpr)
    for dots in (train, step):
        assert dots[-1] == "bfloat16"  # the action head
        islands = sum(d != "bfloat16" for d in dots)
        if name in ("dt", "bc"):
            assert islands == 0, dots
        else:
            assert dots.count("bfloat16") >= 2 * islands, dots
