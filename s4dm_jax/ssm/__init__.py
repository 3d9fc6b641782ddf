"""s4dm_jax.ssm: pure-function S4 / S4D / selective-scan core (no Flax).

Submodules: hippo (HiPPO matrices, NPLR -> DPLR), discretize, kernels (naive, Vandermonde,
Cauchy/DPLR), conv (causal FFT convolution), recurrence (scan / step, DPLR step),
selective (Mamba selective scan), precision (full float32 matrix products on GPU/TPU).
"""

from s4dm_jax.ssm import conv, discretize, hippo, kernels, precision, recurrence, selective

__all__ = ["conv", "discretize", "hippo", "kernels", "precision", "recurrence", "selective"]
