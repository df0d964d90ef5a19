"""The teacher itself fine-tuned on a task: the upper reference a distilled student is held to.

`TeacherClassifier` puts a linear head on the teacher's mean-pooled features of one hidden layer
(the same features the teacher probe reads) and trains encoder and head together, through the
fine-tuning loop the student uses (`finetune.train_fold` / `infer`). Its inputs are NT tokens
instead of bases: `tokenize_padded` turns the task's sequences into a padded token matrix once,
and the loop's batching (`make_batch`: rows, trimmed to the longest, with an attention mask)
works on it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.modeling_outputs import SequenceClassifierOutput

from had_cache import dna, tokenize
from had_cache.schema import hidden_state_index
from had_cache.teacher import Teacher

MAX_CPU_PARAMETERS = 20_000_000
"""On a CPU the teacher is fine-tuned only up to this size (the demo teacher has 4M; NTv2-500M
would take days); on a GPU the rule is memory (`fits_for_finetuning`)."""
GPU_BYTES_PER_PARAMETER = 16
"""fp32 weights, gradients and AdamW's two moments."""


def fits_for_finetuning(n_parameters: int, device: torch.device) -> bool:
    """Whether fine-tuning the teacher is affordable here: on a GPU its weights, gradients and
    optimizer state take at most half the memory; on a CPU it is small (`MAX_CPU_PARAMETERS`)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return n_parameters * GPU_BYTES_PER_PARAMETER <= total // 2
    return n_parameters <= MAX_CPU_PARAMETERS


def tokenize_padded(
    sequences: Sequence[str], max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """NT token ids of every sequence (`<cls>` first, as the teacher reads them) as one
    [N, T_max] int32 matrix padded with the teacher's pad id, plus their lengths."""
    from had_train.eval.finetune import encode_padded

    codes, lengths = encode_padded(tuple(sequences), max_len)  # the evaluation's crop rule
    rows = [
        tokenize.with_cls(np.array([t.id for t in tokenize.tokenize(dna.decode(c[:n]))]))
        for c, n in zip(codes, lengths, strict=True)
    ]
    sizes = np.array([r.size for r in rows], dtype=np.int64)
    out = np.full((len(rows), int(sizes.max())), tokenize.PAD_ID, dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out, sizes


class TeacherClassifier(nn.Module):
    """Teacher encoder + mean pool of one hidden layer (over the sequence's tokens, never
    `<cls>` or padding) + Linear: the student's classifier interface (`embed`, `classifier`,
    `forward(input_ids, attention_mask, labels)`) over NT tokens."""

    def __init__(self, teacher: Teacher, num_labels: int, layer: int = -1) -> None:
        super().__init__()
        self.encoder = teacher.model.base_model
        self.encoder.requires_grad_(True)
        self.layer = hidden_state_index(layer, teacher.info.num_layers)
        self.classifier = nn.Linear(teacher.info.hidden_size, num_labels)

    def embed(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        hidden = out.hidden_states[self.layer].float()
        weights = attention_mask.clone()
        weights[:, 0] = 0  # <cls> is not a token of the sequence
        weights = weights[..., None].to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None
    ) -> SequenceClassifierOutput:
        logits = self.classifier(self.embed(input_ids, attention_mask))
        loss = None if labels is None else F.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)
