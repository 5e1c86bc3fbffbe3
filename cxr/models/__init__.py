"""Models: the report's networks and the project's variant behind one API (cxr/models/base.py),
built by name from the registry (cxr/models/registry.py; importing it does not import torch).

    from cxr.models import create_model, MODELS
    model = create_model("densenet121", pretrained=False)    # random init, 14 logits
    logits = model(x)                                        # x: (B, 3, S, S), model.preprocess
    again = create_model(model.model_name, **model.model_kwargs)  # same architecture, to load into
    MODELS["fusion"].pretrained, MODELS["fusion"].report_network  # what a model is
"""
from __future__ import annotations

from cxr.models.registry import (MODELS, ModelInfo, create_model, list_models, model_info,
                                 model_uses_pretrained)

__all__ = ["MODELS", "ModelInfo", "create_model", "list_models", "model_info",
           "model_uses_pretrained"]
