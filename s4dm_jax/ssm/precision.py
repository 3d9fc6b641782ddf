"""Full float32 matrix products for the SSM maths, on every backend.

On GPUs (TF32 tensor cores) and TPUs (bfloat16 passes) JAX's default precision for float32
matrix products keeps about 10 mantissa bits. The SSM's kernels and recurrences cannot afford
that: the C~ -> C readout raises Ab to the L-th power by repeated squaring, the recurrent
state is carried over thousands of steps with |eigenvalues| close to 1, and the Cauchy sums
are long reductions. On an H200 with the default precision the trained S4DM's recurrent step
differed from its training call by 0.1 in the actions (BENCHMARKS.md, the GPU section). The
official S4 runs in PyTorch, whose float32 matrix products are full precision by default.
`full_precision` runs a function's matrix products at Precision.HIGHEST (on CPUs, which always
compute float32 products in full, it changes nothing). Gradients keep it: the transposed
products carry the forward product's precision, and custom VJP backward rules are wrapped too.
"""

from __future__ import annotations

import functools

import jax


def full_precision(fn):
    """fn with every matrix product traced inside it at Precision.HIGHEST."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped
