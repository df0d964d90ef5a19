"""The model package's one door to `had_train.ops`: every op a layer calls is imported here.

`had_train.export` writes a replacement of only this file, importing the names of `__all__`
(ruff's unused-import check keeps it complete) from the copied op files relatively, so the
exported model's code runs without `had` installed.
"""

from had_train.ops import gated_delta_rule, selective_scan, short_convolution

__all__ = ["gated_delta_rule", "selective_scan", "short_convolution"]
