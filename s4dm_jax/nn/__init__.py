"""Flax linen layers: S4 / S4D layer and block, GPT-2 style causal transformer block, Mamba block,
and the dropout they all use.

`ssm_param_mask(params)` marks the S4 SSM parameters (Lambda, P, B real/imag parts and log_dt)
so the optimiser can give them their own learning rate and no weight decay.
"""

from __future__ import annotations

import jax

from s4dm_jax.nn.dropout import Dropout
from s4dm_jax.nn.mamba import MambaBlock, MambaResidualBlock, mamba_init_state
from s4dm_jax.nn.s4 import STEP_COLLECTION, S4Block, S4Config, S4Layer, S4Stack, s4_init_state
from s4dm_jax.nn.transformer import (
    TransformerBlock,
    causal_attention_mask,
    gpt2_attention,
    gpt2_self_attention,
)

# Leaf names of the S4 SSM parameters (see S4Layer). Mamba's A_log / dt_proj are not included:
# Mamba trains them with the main learning rate, as the reference Mamba code does.
SSM_PARAM_NAMES = frozenset(
    {"log_neg_Lambda_re", "Lambda_im", "P_re", "P_im", "B_re", "B_im", "log_dt"})


def _leaf_name(path) -> str:
    last = path[-1]
    for attr in ("key", "name", "idx"):
        if hasattr(last, attr):
            return str(getattr(last, attr))
    return str(last)


def ssm_param_mask(params):
    """Pytree of bools shaped like `params` (a variables dict or a params dict): True exactly
    for the S4 SSM parameters (leaf names in SSM_PARAM_NAMES)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _leaf_name(path) in SSM_PARAM_NAMES, params)


__all__ = [
    "SSM_PARAM_NAMES", "STEP_COLLECTION", "Dropout", "MambaBlock", "MambaResidualBlock", "S4Block",
    "S4Config", "S4Layer", "S4Stack", "TransformerBlock", "causal_attention_mask",
    "gpt2_attention", "gpt2_self_attention", "mamba_init_state", "s4_init_state", "ssm_param_mask",
]
