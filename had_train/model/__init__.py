"""The HAD student as a self-contained Hugging Face model package (relative imports only, plus
`had_train.ops`), so it exports as is."""

from .configuration_had import HadStudentConfig, parse_mixers
from .modeling_had import (
    HadPretrainingOutput,
    HadStudentForPretraining,
    HadStudentForSequenceClassification,
    HadStudentModel,
    HadStudentPreTrainedModel,
    count_parameters,
)

__all__ = [
    "HadPretrainingOutput",
    "HadStudentConfig",
    "HadStudentForPretraining",
    "HadStudentForSequenceClassification",
    "HadStudentModel",
    "HadStudentPreTrainedModel",
    "count_parameters",
    "parse_mixers",
]
