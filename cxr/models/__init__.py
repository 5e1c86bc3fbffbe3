"""Model registry: the report's four architectures behind one API (see cxr/models/base.py).

    from cxr.models import create_model, MODELS
    model = create_model("densenet121", pretrained=False)    # random init, 14 logits
    logits = model(x)                                        # x: (B, 3, S, S), model.preprocess
    again = create_model(model.model_name, **model.model_kwargs)  # same architecture, to load into

`pretrained=True` loads ImageNet weights through timm (needs the hub); `weights=PATH` loads a
local timm checkpoint (fusion: a dict, see cxr/models/fusion.py). A model built with either
has `pretrained_backbone=True`.
"""
from __future__ import annotations

from cxr.models.backbones import densenet121, efficientnet_b0
from cxr.models.base import CXRModel, model_uses_pretrained
from cxr.models.fusion import FusionNet
from cxr.models.simple_cnn import SimpleCNN

MODELS = {
    "simple_cnn": SimpleCNN,
    "densenet121": densenet121,
    "efficientnet_b0": efficientnet_b0,
    "fusion": FusionNet,
}


def create_model(name: str, pretrained: bool = False, weights=None, num_classes: int = 14,
                 **kw) -> CXRModel:
    """Build a registry model; extra keyword arguments are the model's own (its model_kwargs)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name](pretrained=pretrained, weights=weights, num_classes=num_classes, **kw)


__all__ = ["MODELS", "CXRModel", "create_model", "model_uses_pretrained"]
