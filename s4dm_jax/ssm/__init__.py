"""s4dm_jax.ssm: pure-function S4 / S4D / selective-scan core (no Flax).

Submodules: hippo (HiPPO matrices, NPLR -> DPLR), discretize, kernels (naive, Vandermonde,
Cauchy/DPLR), conv (causal FFT convolution), recurrence (scan / step, DPLR step),
selective (Mamba selective scan).
"""

from s4dm_jax.ssm import conv, discretize, hippo, kernels, recurrence, selective

__all__ = ["conv", "discretize", "hippo", "kernels", "recurrence", "selective"]
