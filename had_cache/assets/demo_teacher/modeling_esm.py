"""Nucleotide Transformer v2 as Hugging Face remote code: ESM with a gated (SwiGLU) feed-forward.

NT v2 keeps ESM-2's pre-layer-norm encoder with rotary positions and changes one thing: each
layer's feed-forward is `W_out(silu(x W_gate) * (x W_value))`, where `W_gate` and `W_value` are
stored as one `intermediate.dense` of width `2 * intermediate_size` (gate half first) and the
linears have no biases when `add_bias_fnn` is false. Parameter names equal the stock ESM ones, so
published NT v2 weights load into these classes without renaming.
"""

from torch import nn
from transformers.models.esm import modeling_esm as _stock

from .esm_config import EsmConfig


class GatedIntermediate(nn.Module):
    """The first half of NT v2's feed-forward: one projection split into a SiLU gate and a value."""

    def __init__(self, config: EsmConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(
            config.hidden_size, 2 * config.intermediate_size, bias=config.add_bias_fnn
        )

    def forward(self, hidden_states):
        gate, value = self.dense(hidden_states).chunk(2, dim=-1)
        return nn.functional.silu(gate) * value


def _use_gated_feed_forward(encoder: nn.Module, config: EsmConfig) -> None:
    """Swap every layer's GELU feed-forward for NT v2's gated one (the output keeps its residual)."""
    for layer in encoder.layer:
        layer.intermediate = GatedIntermediate(config)
        layer.output.dense = nn.Linear(
            config.intermediate_size, config.hidden_size, bias=config.add_bias_fnn
        )


class EsmModel(_stock.EsmModel):
    """The NT v2 encoder (no masked-LM head)."""

    config_class = EsmConfig

    def __init__(self, config: EsmConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer)
        _use_gated_feed_forward(self.encoder, config)
        self.post_init()


class EsmForMaskedLM(_stock.EsmForMaskedLM):
    """The NT v2 encoder and its masked-LM head, as `AutoModelForMaskedLM` loads it."""

    config_class = EsmConfig

    def __init__(self, config: EsmConfig) -> None:
        super().__init__(config)
        _use_gated_feed_forward(self.esm.encoder, config)
        self.post_init()
