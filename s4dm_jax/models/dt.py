"""Decision Transformer (Chen et al. 2021; reference code kzl/decision-transformer, gym/).

Tokens (R_1, s_1, a_1, R_2, s_2, a_2, ...): each modality has its own Linear embedding, every
token of step t gets the learned timestep embedding of t (max_ep_len entries, t clipped),
LayerNorm after stacking, GPT-2 blocks with causal + padding masks, final LayerNorm, and the action
is predicted from the state token (Linear + tanh, or logits for discrete actions).

Initialisation as in the reference: kzl builds the GPT-2 blocks with its own GPT2Model, whose
`_init_weights` draws every Linear/Conv1D weight from N(0, 0.02) with zero biases and LayerNorm
1/0 (no 1/sqrt(2 n_layer) rescaling of the residual projections), while the DT's own modules
outside GPT-2 (return/state/action embeddings, timestep embedding, action head) keep PyTorch's
defaults: Linear weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), Embedding N(0, 1).
LayerNorm epsilon 1e-5 (PyTorch's and GPT-2's). MLP activation: `activation`, ReLU by default as
in kzl's experiment.py (CORL's DT uses exact GELU: activation="gelu").
"""

from __future__ import annotations

from s4dm_jax.models.base import check_choice, hyperparameter_defaults
from s4dm_jax.models.tokens import TokenModule
from s4dm_jax.nn.transformer import ACTIVATIONS, LAYER_NORM_EPS, TransformerBlock


class DecisionTransformerModule(TokenModule):
    """Decision Transformer (fields: TokenModule's plus n_heads and activation, the MLP
    activation of the GPT-2 blocks, a key of nn.transformer.ACTIVATIONS). `step` keeps a
    fixed-size left-padded window of the last K steps in the carry and re-runs the model on it
    (models.base.windowed_step: no growing arrays, no recompilation)."""

    n_heads: int = 1
    activation: str = "relu"

    torch_init = True  # embeddings and head as PyTorch's defaults (the reference's own modules)
    layer_norm_eps = LAYER_NORM_EPS

    def __post_init__(self):
        check_choice("activation", self.activation, ACTIVATIONS)
        super().__post_init__()

    def make_blocks(self):
        return [TransformerBlock(self.d_model, self.n_heads, self.dropout,
                                 activation=self.activation)
                for _ in range(self.n_layers)]


DEFAULTS = hyperparameter_defaults(DecisionTransformerModule)
