"""Decision Mamba (Ota, Toshihiro-Ota/decision-mamba): DT tokens with Mamba blocks.

Tokens (R_1, s_1, a_1, R_2, ...) with per-modality Linear embeddings plus the timestep
embedding, LayerNorm after stacking, blocks x += Mamba(LN x); x += MLP(LN x), final LayerNorm,
action from the state token. Padded positions enter every Mamba mixer as zeros (see
nn.MambaBlock), so left padding equals starting from the zero state.

Inference (`inference`):
  * "window" (default, as the reference and DT): `step` keeps the last K steps in a fixed-size,
    left-padded window and re-runs the model on it (models.base.windowed_step), so evaluation
    sees exactly the K-step windows the model trained on.
  * "recurrent": `step` is O(1) in the episode length: the carry holds each layer's conv buffer
    and SSM state, and each environment step feeds a_{t-1} (from the second step on), R_t and
    s_t. The state then spans the whole episode, so this is only valid for a model trained on
    whole episodes from their first step (config.episode_start_windows=True and context_len >=
    the longest episode); the trainer and the evaluator refuse anything else.
"""

from __future__ import annotations

from s4dm_jax.models.base import hyperparameter_defaults
from s4dm_jax.models.tokens import RecurrentTokenModule
from s4dm_jax.nn.mamba import MambaResidualBlock, mamba_init_state


class DecisionMambaModule(RecurrentTokenModule):
    """Decision Mamba (fields: RecurrentTokenModule's plus the Mamba mixer's d_state, d_conv,
    expand)."""

    d_state: int = 16
    d_conv: int = 4
    expand: int = 2

    def make_blocks(self):
        return [MambaResidualBlock(self.d_model, self.d_state, self.d_conv, self.expand,
                                   self.dropout)
                for _ in range(self.n_layers)]

    def init_block_states(self, batch_size: int):
        return [mamba_init_state(batch_size, self.d_model, self.d_state, self.d_conv, self.expand)
                for _ in range(self.n_layers)]


DEFAULTS = hyperparameter_defaults(DecisionMambaModule)
