"""The HAD student as Hugging Face models: encoder, pretraining heads, sequence classification.

One encoder class (`HadStudentModel`, prefix "had") serves pretraining, embedding, fine-tuning and
export, so a pretraining checkpoint loads into any `*For*` class with `from_pretrained`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.utils import ModelOutput

from .attention import SelfAttentionMixer
from .bidirectional import Bidirectional
from .configuration_had import NUM_BASES, HadStudentConfig
from .gated_deltanet import GatedDeltaNet
from .heads import build_decoder
from .mamba import Mamba
from .mlp import GatedMLP
from .norm import RMSNorm

try:  # transformers >= 5: init functions that skip tensors already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # transformers 4.x: loading decides which modules to initialise
    from torch.nn import init as _init

IGNORE_INDEX = -100
"""Target of a masked base that is not A, C, G or T: cross-entropy's default ignore_index."""


def count_parameters(module: nn.Module) -> int:
    """Number of distinct parameters (shared tensors counted once): the size the paper reports."""
    return sum(p.numel() for p in module.parameters())


def _copy_(tensor: Tensor, value: Tensor) -> None:
    """Copy that, like the other init functions, leaves a checkpoint-loaded tensor alone."""
    if hasattr(_init, "copy_"):
        _init.copy_(tensor, value)
    else:
        with torch.no_grad():
            tensor.copy_(value)


class HadStudentBlock(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + gated MLP(norm(x))."""

    def __init__(self, config: HadStudentConfig, mixer: str) -> None:
        super().__init__()
        self.mixer_name = mixer
        self.mixer_norm = RMSNorm(config.d_model, config.norm_eps)
        if mixer == "gdn":
            layer: nn.Module = GatedDeltaNet(
                config.d_model,
                config.num_heads,
                config.head_dim,
                config.conv_size,
                config.norm_eps,
                config.chunk_size,
            )
            self.mixer = Bidirectional(layer) if config.bidirectional else layer
        elif mixer == "mamba":
            layer = Mamba(
                config.d_model,
                config.mamba_d_state,
                config.mamba_expand,
                config.conv_size,
                config.chunk_size,
            )
            self.mixer = Bidirectional(layer) if config.bidirectional else layer
        elif mixer == "attention":
            self.mixer = SelfAttentionMixer(
                config.d_model, config.num_heads, config.attention_window
            )
        else:  # the config validates names; this guards a config mutated after construction
            raise ValueError(f"unknown mixer {mixer!r}")
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = GatedMLP(config.d_model, config.intermediate_size)

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        x = x + self.mixer(self.mixer_norm(x), attention_mask)
        return x + self.mlp(self.mlp_norm(x))


class HadStudentPreTrainedModel(PreTrainedModel):
    """Shared HF plumbing: config class, weight init, the "had" prefix of the encoder."""

    config_class = HadStudentConfig
    base_model_prefix = "had"
    _no_split_modules = ["HadStudentBlock"]
    # an encoder or classifier loaded from a pretraining checkpoint skips the pretraining heads
    _keys_to_ignore_on_load_unexpected = [r"^align_head\.", r"^decoder\."]

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for Linear/Conv1d/Embedding; norms 1; fla's decay init;
        mamba_ssm's A, D and dt init (HF visits children first, so these override the Linear's)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear | nn.Conv1d):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(
                module.weight, "_is_hf_initialized", False
            ):
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, RMSNorm):
            _init.ones_(module.weight)
        elif isinstance(module, GatedDeltaNet):
            a_log, dt_bias = module.decay_init_values()
            _copy_(module.A_log, a_log)
            _copy_(module.dt_bias, dt_bias)
        elif isinstance(module, Mamba):
            values = module.ssm_init_values()
            for name, param in module.ssm_parameters().items():
                _copy_(param, values[name])


def _check_attention_mask(attention_mask: Tensor, input_ids: Tensor) -> None:
    """The padding contract: same shape as input_ids, valid part left-aligned (1...1 0...0)."""
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} != "
            f"input_ids shape {tuple(input_ids.shape)}"
        )
    mask = attention_mask.long()
    if bool((mask[:, 1:] > mask[:, :-1]).any()):
        raise ValueError(
            "attention_mask must be left-aligned: 1 for valid bases first, then 0 for padding"
        )


class HadStudentModel(HadStudentPreTrainedModel):
    """The encoder: base embedding -> blocks (Bi-GDN ..., attention) -> final RMSNorm."""

    def __init__(self, config: HadStudentConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(
            config.vocab_size, config.d_model, padding_idx=config.pad_token_id
        )
        self.layers = nn.ModuleList(HadStudentBlock(config, mixer) for mixer in config.mixers)
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.post_init()
        if os.environ.get("HAD_COMPILE") == "1":
            self.compile_blocks()

    def compile_blocks(self) -> None:
        """`torch.compile` every block in place (opt-in: this call, or HAD_COMPILE=1 at model
        construction). Parameters and state dict are unchanged. Off by default: on the 2-core CPU
        the first step of every new input shape compiles for minutes, for a gain that was within
        the machine's noise (docs/student.md, "Speed work")."""
        for layer in self.layers:
            layer.compile()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> BaseModelOutput:
        """`last_hidden_state` [B, L, d_model] with padded positions zeroed (the output of every
        HF encoder, so `AutoModel` code works unchanged on an exported student).

        input_ids [B, L] codes (A=0 C=1 G=2 T=3 N=4 MASK=5 PAD=6); attention_mask [B, L]
        (1 = valid, left-aligned) or None.
        """
        if attention_mask is not None:
            _check_attention_mask(attention_mask, input_ids)
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, attention_mask)
        x = self.norm(x)
        if attention_mask is not None:
            x = x * attention_mask[..., None].to(x.dtype)
        return BaseModelOutput(last_hidden_state=x)

    @staticmethod
    def pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Mean over valid positions, [B, L, d] -> [B, d]: the features benchmark heads see."""
        if attention_mask is None:
            return hidden.mean(dim=1)
        valid = attention_mask[..., None].to(hidden.dtype)
        return (hidden * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)


@dataclass
class HadPretrainingOutput(ModelOutput):
    """aligned [B, T-M, teacher_hidden_size]: visible groups, token order.
    recon_logits [B, 6M, 4]: masked bases, ascending base position, over A, C, G, T.
    last_hidden_state [B, W, d_model]: the encoder's output on the masked input."""

    aligned: Tensor | None = None
    recon_logits: Tensor | None = None
    last_hidden_state: Tensor | None = None


class HadStudentForPretraining(HadStudentPreTrainedModel):
    """Encoder + the two HAD heads (alignment to the teacher, masked-base reconstruction).

    Both heads sit outside `had`, so the exported encoder carries no pretraining weights.
    """

    def __init__(self, config: HadStudentConfig) -> None:
        super().__init__(config)
        self.had = HadStudentModel(config)
        self.align_head = nn.Linear(config.d_model, config.teacher_hidden_size)
        self.decoder = build_decoder(config)
        self.post_init()

    def base_mask(self, input_ids: Tensor, group_mask: Tensor) -> Tensor:
        """Group mask [B, T] -> base mask [B, W]: each masked group covers its group_size bases."""
        if group_mask.dtype != torch.bool:
            raise ValueError(f"group_mask must be bool, got {group_mask.dtype}")
        batch, width = input_ids.shape
        if (
            group_mask.shape != (batch, width // self.config.group_size)
            or width % self.config.group_size
        ):
            raise ValueError(
                f"input_ids [B, W] = {tuple(input_ids.shape)} needs group_mask [B, W / "
                f"{self.config.group_size}], got {tuple(group_mask.shape)}"
            )
        counts = group_mask.sum(dim=1)
        if bool((counts != counts[0]).any()):
            raise ValueError(
                f"every row needs the same number of masked groups, got {counts.tolist()}"
            )
        return group_mask.repeat_interleave(self.config.group_size, dim=1)

    def reconstruction_targets(self, input_ids: Tensor, group_mask: Tensor) -> Tensor:
        """Codes of the masked bases [B, 6M], in recon_logits' order; N (or any code >= 4) -> -100.

        Pass the *unmasked* input_ids; -100 is cross-entropy's default ignore_index.
        """
        base_mask = self.base_mask(input_ids, group_mask)
        targets = input_ids[base_mask].view(input_ids.shape[0], -1)
        return targets.masked_fill(targets >= NUM_BASES, IGNORE_INDEX)

    def forward(self, input_ids: Tensor, group_mask: Tensor) -> HadPretrainingOutput:
        """input_ids [B, W] (W = group_size * T); group_mask bool [B, T], exactly M True per row.

        Bases of masked groups are set to mask_token_id here (idempotent if the caller already did),
        so the encoder never sees the bases it must reconstruct.
        """
        batch, width = input_ids.shape
        base_mask = self.base_mask(input_ids, group_mask)
        masked_ids = input_ids.masked_fill(base_mask, self.config.mask_token_id)
        hidden = self.had(masked_ids).last_hidden_state
        d = hidden.shape[-1]
        groups = hidden.view(
            batch, width // self.config.group_size, self.config.group_size, d
        ).mean(2)
        visible_groups = groups[~group_mask].view(batch, -1, d)
        masked = hidden[base_mask].view(batch, -1, d)
        visible = hidden[~base_mask].view(batch, -1, d)
        if masked.shape[1] and not visible.shape[1]:
            raise ValueError("every group is masked: the decoder has no visible context")
        return HadPretrainingOutput(
            aligned=self.align_head(visible_groups),
            recon_logits=self.decoder(masked, visible),
            last_hidden_state=hidden,
        )


class HadStudentForSequenceClassification(HadStudentPreTrainedModel):
    """Encoder + mean pool + Linear(d -> num_labels): the benchmarks' fine-tuning model.

    `from_pretrained(pretraining_dir, num_labels=n)` loads the shared "had." weights and
    initialises only `classifier`; the pretraining heads in the checkpoint are skipped.
    """

    def __init__(self, config: HadStudentConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.had = HadStudentModel(config)
        # "attention" pooling scores each base; the scorer is part of the head (new at
        # fine-tuning, like `classifier`).
        self.pooler = (
            nn.Linear(config.d_model, 1) if config.classifier_pooling == "attention" else None
        )
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def embed(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Pooled sequence features [B, d_model] (the head's input; t-SNE, linear probes),
        pooled as `config.classifier_pooling` says; padding never changes a row's result."""
        hidden = self.had(input_ids, attention_mask).last_hidden_state
        pooling = self.config.classifier_pooling
        if pooling == "mean":
            return self.had.pool(hidden, attention_mask)
        batch, length, _ = hidden.shape
        valid = (
            torch.ones(batch, length, dtype=torch.bool, device=hidden.device)
            if attention_mask is None
            else attention_mask.bool()
        )
        if pooling == "center":
            centre = (valid.sum(dim=1) - 1).clamp(min=0) // 2
            return hidden[torch.arange(batch, device=hidden.device), centre]
        scores = self.pooler(hidden).squeeze(-1).float().masked_fill(~valid, float("-inf"))
        weights = scores.softmax(dim=-1).to(hidden.dtype)
        return torch.einsum("bl,bld->bd", weights, hidden)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None
    ) -> SequenceClassifierOutput:
        """Logits [B, num_labels]; loss: cross-entropy (num_labels > 1) or MSE (num_labels == 1)."""
        logits = self.classifier(self.embed(input_ids, attention_mask))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)
