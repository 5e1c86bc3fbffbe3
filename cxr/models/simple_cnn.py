"""`simple_cnn`: the report's from-scratch baseline, exactly 129,870 parameters.

    Conv 3->32 3x3 + ReLU, MaxPool 2, Conv 32->64 + ReLU, MaxPool 2, Conv 64->128 + ReLU,
    MaxPool 2, GAP, Dense 256 + ReLU, Dropout 0.5, Dense 14

The report's network has no dropout, which would make Monte-Carlo dropout a no-op (std 0 for
every image); we add one parameter-free Dropout before the last Dense layer so the model can
report uncertainty like the others. `drop_rate=0` gives the report's net exactly.
Convolutions use padding 1 so tiny inputs (32 px in tests) keep a spatial map.

    from cxr.models import create_model
    model = create_model("simple_cnn")          # random init; there are no pretrained weights
"""
from __future__ import annotations

import torch
from torch import nn

from cxr.models.base import CXRModel


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]


class SimpleCNN(CXRModel):
    model_name = "simple_cnn"

    def __init__(self, num_classes: int = 14, pretrained: bool = False, weights=None,
                 input_size: int = 224, drop_rate: float = 0.5, hidden: int = 256):
        super().__init__()
        if pretrained or weights is not None:
            raise ValueError("simple_cnn has no ImageNet weights: use pretrained=False, weights=None "
                             "(load a trained checkpoint with cxr.checkpoint.load_model)")
        self.backbone = nn.Sequential(*_block(3, 32), *_block(32, 64), *_block(64, 128))
        self.head = nn.Sequential(nn.Linear(128, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(drop_rate), nn.Linear(hidden, num_classes))
        self.gradcam_layer = self.backbone[-1]  # last MaxPool: its output is the pooled map
        self._set_meta(dict(num_classes=num_classes, input_size=input_size, drop_rate=drop_rate,
                            hidden=hidden), input_size, pretrained_backbone=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
