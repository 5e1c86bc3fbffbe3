"""`densenet121` and `efficientnet_b0`: timm backbones with the report's head.

    backbone feature map -> GAP -> Dropout 0.4 -> Dense 512 + ReLU -> Dropout 0.5 -> Dense 14

The head's C*512 + 512 + 512*14 + 14 parameters are the report's 531,982 for DenseNet121
(C=1024) and 663,054 for EfficientNet-B0 (C=1280). Both dropouts follow the pooling, so
Monte-Carlo dropout only resamples the head. The two rates are the report's two numbers, each
on the layer it names (MODEL_CARD.md, "Baseline heads"): `drop_rate` 0.4 on the "dropout with
Monte Carlo sampling (rate = 0.4)" after pooling, `hidden_drop_rate` 0.5 (Table 1's "Dropout
Rate") on the dropout after the 512-unit layer. `hidden_drop_rate=0.4` gives both 0.4, as
this project did before (checkpoints saved without `hidden_drop_rate` load that way).

    from cxr.models import create_model
    m = create_model("densenet121")                                  # random init
    m = create_model("densenet121", pretrained=True)                 # ImageNet weights, timm hub
    m = create_model("densenet121", weights="densenet121.safetensors")  # same, from a local file

`weights` is a timm ImageNet checkpoint of that architecture (e.g. `model.safetensors` from
huggingface.co/timm/densenet121.tv_in1k, or a `.pth` state dict of `timm.create_model(arch)`),
loaded strictly: a missing file is a FileNotFoundError and a missing key an error, never a
silently random backbone.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from cxr.models.base import CXRModel


def create_timm_backbone(arch: str, pretrained: bool = False, weights=None,
                         drop_path_rate: float = 0.0) -> nn.Module:
    """A full timm ImageNet model, optionally with weights from the hub or a local file.

    The classifier is kept while loading, so timm loads strictly (with a 14- or 0-class head
    it would drop the classifier and stop checking missing keys); callers remove it after.
    `drop_path_rate`: stochastic depth of EfficientNet's residual blocks while training (timm's
    default 0; Keras's EfficientNet, which the report used, drops at 0.2 by default).
    """
    extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    if drop_path_rate and not arch.startswith("efficientnet"):
        raise ValueError(f"drop_path_rate={drop_path_rate}: {arch} has no residual blocks to "
                         "drop (stochastic depth applies to the EfficientNets)")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{arch} weights file not found: {path}")
        return timm.create_model(arch, pretrained=True, **extra,
                                 pretrained_cfg_overlay=dict(file=str(path.resolve())))
    return timm.create_model(arch, pretrained=pretrained, **extra)


# Module whose output is timm's forward_features map (the last normalisation + activation).
_GRADCAM_LAYER = {"densenet121": "features.norm5", "efficientnet_b0": "bn2"}


class TimmClassifier(CXRModel):
    """A timm backbone's final feature map pooled into the report's head."""

    def __init__(self, arch: str, *, input_size: int, num_classes: int = 14,
                 pretrained: bool = False, weights=None, drop_rate: float = 0.4, hidden: int = 512,
                 drop_path_rate: float = 0.0, hidden_drop_rate: float = 0.5):
        super().__init__()
        if arch not in _GRADCAM_LAYER:
            raise ValueError(f"unsupported backbone {arch!r}; expected one of "
                             f"{sorted(_GRADCAM_LAYER)}")
        self.model_name = arch
        self.backbone = create_timm_backbone(arch, pretrained, weights, drop_path_rate)
        self.backbone.reset_classifier(0, "")  # forward_features gives the unpooled map
        features = self.backbone.num_features
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(features, hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(hidden_drop_rate),
                                  nn.Linear(hidden, num_classes))
        self.gradcam_layer = self.backbone.get_submodule(_GRADCAM_LAYER[arch])
        self._set_meta(dict(num_classes=num_classes, input_size=input_size, drop_rate=drop_rate,
                            hidden=hidden, drop_path_rate=drop_path_rate,
                            hidden_drop_rate=hidden_drop_rate), input_size,
                       pretrained or weights is not None)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def densenet121(**kw) -> TimmClassifier:
    return TimmClassifier("densenet121", **kw)


def efficientnet_b0(**kw) -> TimmClassifier:
    return TimmClassifier("efficientnet_b0", **kw)
