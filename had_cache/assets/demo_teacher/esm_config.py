"""Configuration of Nucleotide Transformer v2 checkpoints (shipped as remote code in a folder).

This file and `modeling_esm.py` are copied into every teacher folder that `had_cache.ntv2` saves,
and `config.json` points `auto_map` at them, the way the published NT v2 checkpoints do. They
depend on nothing but `transformers`.
"""

from transformers.models.esm.configuration_esm import EsmConfig as _StockEsmConfig


class EsmConfig(_StockEsmConfig):
    """Stock ESM settings plus `add_bias_fnn`: whether the gated feed-forward's linears have biases.

    NT v2 checkpoints set `add_bias_fnn: false`.
    """

    add_bias_fnn: bool = True
