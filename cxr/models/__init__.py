"""Models: the report's networks and the project's variant behind one API (cxr/models/base.py).

    from cxr.models import create_model, MODELS
    model = create_model("densenet121", pretrained=False)    # random init, 14 logits
    logits = model(x)                                        # x: (B, 3, S, S), model.preprocess
    again = create_model(model.model_name, **model.model_kwargs)  # same architecture, to load into
    MODELS["fusion"].pretrained, MODELS["fusion"].report_network  # what a model is (registry.py)

`pretrained=True` loads ImageNet weights through timm (needs the hub); `weights=PATH` loads a
local timm checkpoint (fusion models: a dict, see cxr/models/fusion.py). A model built with
either has `pretrained_backbone=True`. Importing this package does not import torch: the
builders are imported when a model is built.
"""
from __future__ import annotations

from cxr.models.registry import (MODELS, ModelInfo, create_model, list_models, model_info,
                                 model_uses_pretrained)

__all__ = ["MODELS", "ModelInfo", "create_model", "list_models", "model_info",
           "model_uses_pretrained"]
