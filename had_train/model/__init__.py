"""The HAD student as a self-contained Hugging Face model package: relative imports only, plus
`had_train.ops` through one file (`_ops.py`), so `had_train.export` ships it as remote code."""

from .configuration_had import HadStudentConfig, parse_mixers
from .modeling_had import (
    IGNORE_INDEX,
    HadPretrainingOutput,
    HadStudentForPretraining,
    HadStudentForSequenceClassification,
    HadStudentModel,
    HadStudentPreTrainedModel,
    count_parameters,
)

__all__ = [
    "IGNORE_INDEX",
    "HadPretrainingOutput",
    "HadStudentConfig",
    "HadStudentForPretraining",
    "HadStudentForSequenceClassification",
    "HadStudentModel",
    "HadStudentPreTrainedModel",
    "count_parameters",
    "parse_mixers",
]
