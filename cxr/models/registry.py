"""The model registry: every model `create_model` builds, and what each one is.

    from cxr.models import MODELS, create_model, list_models
    MODELS["fusion"].pretrained, MODELS["fusion"].input_size   # True, 224 (see ModelInfo)
    list_models(pretrained=False)      # ["simple_cnn"]: trained from scratch, in one phase
    model = create_model("fusion")     # random init; the builder is imported only now

Like timm's registry and pretrained configs, each entry describes its model and names where
its builder lives. Builders are imported when a model is built, so reading the registry (the
Train page, `cxr train --help`, config validation) does not import torch or timm.
Everything that offers or checks a model name reads MODELS; training picks one phase or two
from `pretrained` (cxr/train/phases.py). A new model: a CXRModel subclass (base.py) in its own
module under cxr/models/, and one entry below.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    entrypoint: str               # "module:callable" building the model from keyword arguments
    pretrained: bool              # ImageNet weights exist (pretrained=True / weights=PATH work)
    input_size: int               # default input size in pixels (square)
    report_network: str | None    # the report's network it implements; None: the project's own
    description: str              # one line
    feature_map: str              # what forward_features returns (the Grad-CAM target), in words

    def builder(self):
        module, attr = self.entrypoint.split(":")
        return getattr(importlib.import_module(module), attr)


_ENTRIES = [
    ModelInfo("simple_cnn", "cxr.models.simple_cnn:SimpleCNN", pretrained=False, input_size=224,
              report_network="Simple CNN (Figure 3a; to the layer with report=True)",
              description="3 conv blocks + GAP + Dense 256 + Dense 14, trained from scratch",
              feature_map="the last convolution block's map"),
    ModelInfo("densenet121", "cxr.models.backbones:densenet121", pretrained=True,
              input_size=224, report_network="DenseNet121 (Figure 3b)",
              description="timm DenseNet121 + the report's 512-unit head",
              feature_map="DenseNet121's last feature map"),
    ModelInfo("efficientnet_b0", "cxr.models.backbones:efficientnet_b0", pretrained=True,
              input_size=224, report_network="EfficientNetB0 (Figure 3c)",
              description="timm EfficientNet-B0 + the report's 512-unit head",
              feature_map="EfficientNet-B0's last feature map"),
    ModelInfo("fusion", "cxr.models.fusion:FusionNet", pretrained=True, input_size=224,
              report_network="Dense-Efficient Attention-Fusion Network (Figure 4)",
              description="DenseNet121 + EfficientNet-B3 taps, concat, one self-attention "
                          "layer: 10,521,273 parameters",
              feature_map="the attention-refined fused map"),
    ModelInfo("fusion_xattn", "cxr.models.fusion_xattn:CrossAttentionFusionNet", pretrained=True,
              input_size=224, report_network=None,
              description="the project's variant: stride-16 taps, bidirectional cross-attention",
              feature_map="the cross-attention fused map"),
]
MODELS: dict[str, ModelInfo] = {info.name: info for info in _ENTRIES}


def model_info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name]


def list_models(pretrained: bool | None = None) -> list[str]:
    """Registry names in order; pretrained=True/False keeps those with/without ImageNet weights."""
    return [n for n, info in MODELS.items() if pretrained is None or info.pretrained == pretrained]


def create_model(name: str, pretrained: bool = False, weights=None, num_classes: int = 14, **kw):
    """Build a registry model; extra keyword arguments are the model's own (its model_kwargs).

    `pretrained=True` loads ImageNet weights through timm (needs the hub); `weights=PATH` loads
    a local timm checkpoint (fusion models: a dict, see cxr/models/fusion.py); either sets the
    model's `pretrained_backbone`. A model without ImageNet weights refuses both rather than
    start from random weights unannounced."""
    info = model_info(name)
    if (pretrained or weights is not None) and not info.pretrained:
        raise ValueError(f"{name} has no ImageNet weights: use pretrained=False, weights=None "
                         "(load a trained checkpoint with cxr.checkpoint.load_model)")
    kw.setdefault("input_size", info.input_size)
    if info.pretrained:
        kw.update(pretrained=pretrained, weights=weights)
    return info.builder()(num_classes=num_classes, **kw)


def model_uses_pretrained(model) -> bool:
    """Whether the backbone started from ImageNet weights; training skips the frozen-backbone
    phase 1 when it did not (a random backbone frozen would teach the head nothing)."""
    return bool(getattr(model, "pretrained_backbone", False))
