"""`HadStudentConfig`: every architecture choice of the HAD student, saved with each checkpoint."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

ALLOWED_MIXERS = ("gdn", "mamba", "attention")
ALLOWED_DECODERS = ("cross_attention", "linear")
ALLOWED_POOLINGS = ("mean", "center", "attention")
# The reconstruction decoder predicts input codes 0..3 (A, C, G, T); codes >= 4 (N, MASK, PAD)
# are never targets.
NUM_BASES = 4

# [ours] The paper publishes only "≈1.1M parameters, Bi-GDN blocks then one attention layer".
# "paper": d_model 128, 4 bidirectional GDN blocks (2 heads of 64, forward/reverse weights tied,
# outputs added) then one self-attention block, gated SiLU MLPs of width 384.
_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "d_model": 128,
        "mixers": ["gdn", "gdn", "gdn", "gdn", "attention"],
        "num_heads": 2,
        "head_dim": 64,
        "intermediate_size": 384,
        "decoder_heads": 4,
    },
    "tiny": {
        "d_model": 32,
        "mixers": ["gdn", "attention"],
        "num_heads": 2,
        "head_dim": 16,
        "intermediate_size": 64,
        "decoder_heads": 2,
        "teacher_hidden_size": 24,
    },
}


def parse_mixers(text: str) -> list[str]:
    """The command-line form of `mixers`: "gdn,gdn,attention" -> ["gdn", "gdn", "attention"].

    Names are checked by HadStudentConfig, which raises ValueError listing the allowed ones.
    """
    return [name.strip() for name in text.split(",") if name.strip()]


class HadStudentConfig(PretrainedConfig):
    r"""Configuration of the character-level HAD student (one token per base).

    Args:
        vocab_size: number of input codes: A=0 C=1 G=2 T=3 N=4 MASK=5 PAD=6.
        mask_token_id: code written at masked bases before the encoder sees them.
        pad_token_id: code of padding positions (their embedding row is zero).
        d_model: residual width.
        mixers: one entry per block, in order: "gdn" (a Gated DeltaNet layer), "mamba" (a Mamba-1
            layer), both bidirectional when `bidirectional`, or "attention" (bidirectional
            self-attention).
        bidirectional: wrap every "gdn" and "mamba" mixer in the flip-and-add wrapper with tied
            weights.
        num_heads: heads of the GDN layers and of the self-attention block.
        head_dim: key and value width per GDN head (GDN inner width = num_heads * head_dim).
            The attention block uses d_model // num_heads per head.
        conv_size: kernel of the short causal depthwise convolutions (GDN's q, k, v; Mamba's x).
        mlp_ratio: gated MLP width as a multiple of d_model, used when intermediate_size is None.
        intermediate_size: gated SiLU MLP width after each mixer (and in the decoder).
        norm_eps: epsilon of every RMSNorm.
        chunk_size: chunk length of the PyTorch gated-delta-rule and selective-scan ops (fla and
            mamba_ssm fix their own).
        mamba_d_state: state size N per channel of the "mamba" mixers (mamba_ssm's d_state).
        mamba_expand: inner width of the "mamba" mixers as a multiple of d_model (mamba_ssm's
            expand); dt_rank is mamba_ssm's "auto", ceil(d_model / 16).
        teacher_hidden_size: width of the alignment target; the trainer sets it from the store.
        group_size: bases per teacher token (NT 6-mers), so a window of W bases has W / 6 groups.
        decoder: reconstruction decoder, "cross_attention" (masked positions attend to visible
            ones, CrossMAE-like) or "linear" (a Linear on masked positions' features).
        decoder_heads: heads of the cross-attention decoder.
        attention_window: None (default, the paper): the "attention" blocks attend over the whole
            sequence, so their cost grows as L^2. An integer W splits longer sequences into
            blocks of W bases (from position 0) that attend within themselves: identical to
            global attention for L <= W, linear in L beyond. Not in the paper; for long inputs.
        initializer_range: std of the normal init of Linear, Conv1d and Embedding weights.
        num_labels: (a standard `PretrainedConfig` keyword) classes of the classification head.
        classifier_pooling: how the classification head pools the encoder's per-base features:
            "mean" over valid bases (default), "center" (the middle base: benchmark tasks are
            often centred on the feature they label, e.g. a splice site), or "attention" (a
            learned score per base, softmax over valid bases, weighted mean).
    """

    model_type = "had_student"

    def __init__(
        self,
        vocab_size: int = 7,
        mask_token_id: int = 5,
        pad_token_id: int = 6,
        d_model: int = 128,
        mixers: list[str] | None = None,
        bidirectional: bool = True,
        num_heads: int = 2,
        head_dim: int = 64,
        conv_size: int = 4,
        mlp_ratio: float = 3.0,
        intermediate_size: int | None = None,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        mamba_d_state: int = 16,
        mamba_expand: int = 2,
        teacher_hidden_size: int = 1024,
        group_size: int = 6,
        decoder: str = "cross_attention",
        decoder_heads: int = 4,
        attention_window: int | None = None,
        initializer_range: float = 0.02,
        classifier_pooling: str = "mean",
        **kwargs: Any,
    ) -> None:
        mixers = list(_PRESETS["paper"]["mixers"] if mixers is None else mixers)
        for mixer in mixers:
            if mixer not in ALLOWED_MIXERS:
                raise ValueError(
                    f"unknown mixer {mixer!r}; allowed mixers: {', '.join(ALLOWED_MIXERS)}"
                )
        if not mixers:
            raise ValueError("mixers must name at least one block")
        if classifier_pooling not in ALLOWED_POOLINGS:
            raise ValueError(
                f"unknown classifier_pooling {classifier_pooling!r}; "
                f"allowed: {', '.join(ALLOWED_POOLINGS)}"
            )
        if decoder not in ALLOWED_DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; allowed: {', '.join(ALLOWED_DECODERS)}")
        if "attention" in mixers and d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        if attention_window is not None and attention_window < 1:
            raise ValueError(
                f"attention_window must be a positive number of bases or None, got {attention_window}"
            )
        if decoder == "cross_attention" and d_model % decoder_heads:
            raise ValueError(
                f"d_model={d_model} must be divisible by decoder_heads={decoder_heads}"
            )
        self.vocab_size = vocab_size
        self.mask_token_id = mask_token_id
        self.d_model = d_model
        self.mixers = mixers
        self.bidirectional = bidirectional
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.conv_size = conv_size
        self.mlp_ratio = mlp_ratio
        self.intermediate_size = (
            int(round(mlp_ratio * d_model)) if intermediate_size is None else intermediate_size
        )
        self.norm_eps = norm_eps
        self.chunk_size = chunk_size
        self.mamba_d_state = mamba_d_state
        self.mamba_expand = mamba_expand
        self.teacher_hidden_size = teacher_hidden_size
        self.group_size = group_size
        self.decoder = decoder
        self.decoder_heads = decoder_heads
        self.attention_window = attention_window
        self.initializer_range = initializer_range
        self.classifier_pooling = classifier_pooling
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> HadStudentConfig:
        """A named architecture with fields overridden (e.g. teacher_hidden_size from the store).

        "paper": the ≈1.1M-parameter student: the encoder (`HadStudentModel`) has exactly
        1,141,264 parameters. "tiny": d_model 32, mixers ["gdn", "attention"], for tests.
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(_PRESETS))}")
        return cls(**{**_PRESETS[name], **overrides})
