"""Every matrix product of the SSM maths is traced at Precision.HIGHEST (ssm.precision): on GPUs
and TPUs the default float32 precision (TF32 / bfloat16 passes) broke step == call. CPUs always
compute float32 in full, so this checks the traced programs, forward and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from s4dm_jax.ssm import discretize, hippo, kernels, recurrence, selective

HIGHEST = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)


def _dot_precisions(jaxpr) -> list:
    """The precision of every dot_general in a closed jaxpr, sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            precision = eqn.params["precision"]
            found.append(precision if isinstance(precision, tuple) else (precision,) * 2)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _dot_precisions(inner)
    return found


def _assert_all_highest(fn, *args):
    precisions = _dot_precisions(jax.make_jaxpr(fn)(*args).jaxpr)
    assert precisions, "no matrix product traced: the check would be vacuous"
    assert all(p == HIGHEST for p in precisions), precisions


def _system(m=4):
    lam, p, b, _ = hippo.nplr("legs", 2 * m)
    lam, p, b = (jnp.asarray(x[:m], jnp.complex64) for x in (lam, p[:, :m], b[:m]))
    c = jnp.asarray(np.random.default_rng(0).standard_normal(m) * (1 + 1j), jnp.complex64)
    return lam, p, b, c, jnp.float32(0.05)


def test_s4_kernel_readout_and_step_use_full_precision_forward_and_gradient():
    lam, p, b, c, dt = _system()

    def loss(lam_re, c):
        lam_ = lam_re + 1j * jnp.imag(lam)
        k = kernels.cauchy_dplr(lam_, p, b, c, dt, 16)
        c_step = kernels.dplr_c_from_tilde(lam_, p, b, c, dt, 16)
        _, y = recurrence.dplr_scan(lam_, p, None, b, c_step, dt, jnp.ones(16))
        return jnp.sum(k ** 2) + jnp.sum(y ** 2)

    _assert_all_highest(loss, jnp.real(lam), c)
    _assert_all_highest(jax.grad(loss, argnums=(0, 1)), jnp.real(lam), c)  # incl. custom VJP


def test_dense_and_diagonal_paths_use_full_precision():
    a = jnp.asarray(np.random.default_rng(1).standard_normal((4, 4)) - 4 * np.eye(4),
                    jnp.float32)
    b = jnp.ones(4, jnp.float32)
    _assert_all_highest(lambda a: kernels.naive(*discretize.bilinear(a, b, 0.1), b, 8), a)
    _assert_all_highest(lambda a: recurrence.scan(*discretize.zoh(a, b, 0.1), b,
                                                   jnp.ones(8))[1], a)


@pytest.mark.parametrize("method", selective.METHODS)
def test_selective_scan_gradient_uses_full_precision(method):
    rng = np.random.default_rng(2)
    u, delta = (jnp.asarray(rng.uniform(0.1, 1, (2, 8, 3)), jnp.float32) for _ in range(2))
    a = -jnp.ones((3, 4), jnp.float32)
    bc = jnp.asarray(rng.standard_normal((2, 8, 4)), jnp.float32)

    def loss(bc):
        return jnp.sum(selective.selective_scan(u, delta, a, bc, bc, method=method, chunk=4))

    precisions = _dot_precisions(jax.make_jaxpr(jax.grad(loss))(bc).jaxpr)
    assert all(p == HIGHEST for p in precisions), precisions


def test_the_check_sees_a_default_precision_product():
    """The checker itself: a plain product outside the SSM functions is reported as default."""
    x = jnp.ones((3, 3))
    assert _dot_precisions(jax.make_jaxpr(lambda x: x @ x)(x).jaxpr) != [HIGHEST]
