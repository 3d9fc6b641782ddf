"""S4DM's recurrent step equals its training call at the preset sizes (16 layers, N = 256,
H = 18, whole 1000-step episodes), not only at toy sizes: float32, measured max relative
difference ~1e-4 (the kernel is built for L = 1000 and the step runs 1000 recurrent steps)."""

import jax
import jax.numpy as jnp
import numpy as np

from s4dm_jax.models import DEFAULTS, make_model


def test_s4dm_preset_step_equals_call_over_a_whole_episode():
    assert DEFAULTS["s4dm"]["n_layers"] == 16 and DEFAULTS["s4dm"]["ssm"]["d_state"] == 256
    model = make_model("s4dm", 11, 3, context_len=1000)
    params = model.init(jax.random.PRNGKey(0))
    length = 1000
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    ep = {"rtg": jax.random.normal(k[0], (1, length)),
          "states": jax.random.normal(k[1], (1, length, 11)),
          "actions": jax.random.uniform(k[2], (1, length, 3), minval=-1, maxval=1),
          "timesteps": jnp.arange(length, dtype=jnp.int32)[None],
          "mask": jnp.ones((1, length))}
    preds = np.asarray(model.apply(params, ep))
    variables = jax.jit(model.prepare_step)(params)

    def body(carry, x):
        rtg, s, a_prev, t = x
        carry, out = model.step(variables, carry, rtg[None], s[None], a_prev[None], t[None])
        return carry, out[0]

    a_prev = jnp.concatenate([jnp.zeros((1, 3)), ep["actions"][0, :-1]])
    _, outs = jax.jit(lambda c: jax.lax.scan(
        body, c, (ep["rtg"][0], ep["states"][0], a_prev, ep["timesteps"][0])))(
        model.init_carry(1))
    err = np.abs(np.asarray(outs) - preds[0]).max() / np.abs(preds).max()
    print(f"max relative difference step vs call: {err:.2e}")
    assert err <= 1e-3, err
