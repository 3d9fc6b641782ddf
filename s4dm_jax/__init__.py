"""s4dm_jax: S4 Decision Model and sequence-model baselines for offline RL in JAX/Flax."""

__version__ = "0.1.0"
