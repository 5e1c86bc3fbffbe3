"""The report's classification head for the pretrained baselines.

    pooled (B, C) -> Dropout(p) -> Dense 512 + ReLU -> Dropout(p) -> Dense 14 -> logits

Global average pooling happens before it (`CXRModel.pool_features`), so both dropouts sit
after the backbone and Monte-Carlo dropout only needs to resample this module.
Parameters: C*512 + 512 + 512*14 + 14, i.e. 531,982 for DenseNet121 (C=1024) and 663,054 for
EfficientNet-B0 (C=1280), the report's numbers.
"""
from __future__ import annotations

from torch import nn


def report_head(in_features: int, num_classes: int = 14, hidden: int = 512,
                drop_rate: float = 0.4) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(drop_rate),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(drop_rate),
        nn.Linear(hidden, num_classes),
    )
