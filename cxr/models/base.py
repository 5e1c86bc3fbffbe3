"""The API every registry model shares (ARCHITECTURE.md, "Model").

    logits = model(x)                                  # (B, 14), never sigmoid-ed here
    f = model.forward_features(x)                      # (B, C, h, w): pooled map, Grad-CAM target
    logits = model.classify(model.pool_features(f))    # == model.forward_head(f)

All dropout lives in `classify`, after pooling, and the backbone is deterministic in eval mode:
that is what lets `cxr.uncertainty.mc_predict` run the backbone once and sample only the head.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from cxr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cxr.labels import FINDINGS, NUM_CLASSES


class CXRModel(nn.Module):
    """Base class. Subclasses set `backbone`, `head` (the classify MLP), `gradcam_layer`,
    implement `forward_features`, and call `_set_meta` with the kwargs that rebuild them."""

    model_name: str = ""
    head: nn.Module
    pretrained_backbone: bool = False  # True when ImageNet weights were loaded (hub or file)

    def _set_meta(self, model_kwargs: dict, input_size: int, pretrained_backbone: bool) -> None:
        # JSON-safe: create_model(model_name, **model_kwargs)
        self.model_kwargs = dict(model_kwargs)
        n = model_kwargs["num_classes"]  # generic labels only for other heads (experiments)
        self.labels = FINDINGS if n == NUM_CLASSES else tuple(f"class_{i}" for i in range(n))
        self.preprocess = {"input_size": int(input_size), "mean": list(IMAGENET_MEAN),
                           "std": list(IMAGENET_STD)}
        self.pretrained_backbone = bool(pretrained_backbone)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool_features(self, f: torch.Tensor) -> torch.Tensor:
        """Global average pooling: (B, C, h, w) -> (B, C)."""
        return f.mean(dim=(2, 3))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) -> logits (B, num_classes); holds every dropout layer of the model."""
        return self.head(pooled)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool_features(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def backbone_modules(self) -> list[nn.Module]:
        """Modules frozen in training phase 1 (subclasses override)."""
        return [self.backbone]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        for module in self.backbone_modules():
            yield from module.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not a backbone parameter (the two partition the model)."""
        backbone = {id(p) for p in self.backbone_parameters()}
        return (p for p in self.parameters() if id(p) not in backbone)

