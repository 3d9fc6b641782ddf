"""Optimiser: warmup schedule values, SSM parameters get their own lr and no weight decay."""

import jax.numpy as jnp
import ml_collections
import numpy as np

from s4dm_jax.train.optim import make_optimizer, warmup_schedule


def _cfg(**kw):
    c = ml_collections.ConfigDict(dict(learning_rate=1e-2, ssm_learning_rate=1e-3,
                                       weight_decay=0.5, warmup_steps=4, grad_clip=1e9,
                                       b1=0.9, b2=0.999))
    c.update(kw)
    return c


def test_warmup_schedule_is_linear_then_constant():
    sched = warmup_schedule(2.0, 4)
    np.testing.assert_allclose([float(sched(s)) for s in range(6)], [0.5, 1.0, 1.5, 2.0, 2.0, 2.0])
    assert float(warmup_schedule(3.0, 0)(7)) == 3.0


def test_ssm_params_use_their_own_lr_and_no_weight_decay():
    params = {"dense": {"kernel": jnp.ones(3)}, "s4": {"log_dt": jnp.ones(3)}}
    mask = {"dense": {"kernel": False}, "s4": {"log_dt": True}}
    opt = make_optimizer(_cfg(warmup_steps=0), mask)
    grads = {"dense": {"kernel": jnp.zeros(3)}, "s4": {"log_dt": jnp.zeros(3)}}
    updates, _ = opt.update(grads, opt.init(params), params)
    # zero gradient: the AdamW update is -lr * wd * param for decayed leaves, 0 for SSM leaves
    np.testing.assert_allclose(updates["dense"]["kernel"], -1e-2 * 0.5 * np.ones(3), rtol=1e-6)
    np.testing.assert_allclose(updates["s4"]["log_dt"], np.zeros(3))
    grads = {"dense": {"kernel": jnp.ones(3)}, "s4": {"log_dt": jnp.ones(3)}}
    updates, _ = opt.update(grads, opt.init(params), params)
    # first Adam step with unit gradient: direction 1, so update = -lr (- lr*wd*p for decayed)
    np.testing.assert_allclose(updates["s4"]["log_dt"], -1e-3 * np.ones(3), rtol=1e-4)
    np.testing.assert_allclose(updates["dense"]["kernel"], -1e-2 * (1 + 0.5) * np.ones(3),
                               rtol=1e-4)


def test_warmup_scales_the_update_and_hyperparameters_vmap():
    """Injected lr/wd: states initialised with different values under vmap train those values
    (== separate optimisers built with them); warmup multiplies the whole AdamW update."""
    import jax

    params = {"dense": {"kernel": jnp.ones(3)}, "s4": {"log_dt": jnp.ones(3)}}
    mask = {"dense": {"kernel": False}, "s4": {"log_dt": True}}
    grads = {"dense": {"kernel": jnp.ones(3)}, "s4": {"log_dt": jnp.ones(3)}}
    cfg = _cfg(warmup_steps=4)
    lrs, wds = jnp.array([1e-2, 3e-3]), jnp.array([0.5, 0.0])

    def one(lr, wd):
        opt = make_optimizer(cfg, mask, learning_rate=lr, weight_decay=wd)
        return opt.init(params)

    states = jax.vmap(one)(lrs, wds)
    update = jax.vmap(lambda s: make_optimizer(cfg, mask).update(grads, s, params)[0])(states)
    for i in range(2):
        opt = make_optimizer(_cfg(warmup_steps=4, learning_rate=float(lrs[i]),
                                  weight_decay=float(wds[i])), mask)
        want, _ = opt.update(grads, opt.init(params), params)
        np.testing.assert_allclose(update["dense"]["kernel"][i], want["dense"]["kernel"],
                                   rtol=1e-6)
        # step 0 of a 4-step warmup: a quarter of the full AdamW update
        np.testing.assert_allclose(want["dense"]["kernel"],
                                   -float(lrs[i]) * (1 + float(wds[i])) / 4 * np.ones(3),
                                   rtol=1e-4)
