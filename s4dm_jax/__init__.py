"""s4dm_jax: S4 Decision Model and sequence-model baselines for offline RL in JAX/Flax."""

from s4dm_jax._jax_compat import apply_fft_deadlock_workaround

apply_fft_deadlock_workaround()

__version__ = "0.1.0"
