"""`fusion_xattn`: the project's own fusion variant (the report's network is `fusion`).

    x -> DenseNet121 up to stride `dense_stride` (1024 ch at 16) -> 1x1 conv + BN -> 256 ch --+
    x -> EfficientNet-B3 up to stride `eff_stride` (136 ch at 16) -> 1x1 conv + BN -> 256 ch -+
         (EfficientNet's map resized bilinearly to DenseNet's grid when the two differ)
    -> bidirectional cross-attention: DenseNet tokens query EfficientNet tokens and vice versa,
       multi-head, residual + LayerNorm, 2D sine position code added to queries and keys
    -> concat: the 512-channel "attention-fused" map = forward_features (Grad-CAM target)
    -> GAP -> Dropout 0.5 -> Dense 14

    from cxr.models import create_model
    m = create_model("fusion_xattn")                             # random init
    m = create_model("fusion_xattn", pretrained=True)            # both backbones, timm hub
    m = create_model("fusion_xattn", weights={"densenet121": "dn.safetensors",
                                              "efficientnet_b3": "b3.safetensors"})
    m = create_model("fusion_xattn", dense_stride=8, eff_stride=8, dim=128, heads=4)

It reads the report's "Cross-Attention layer" literally: each backbone's map attends to the
other's, where the report's parameter count implies one self-attention layer over the
concatenation (fusion.py). Its checkpoints from when it was `fusion` still load
(checkpoint.RENAMED).

Blocks deeper than the taps are removed (timm `prune_intermediate_layers`), so they cost
neither time nor parameters. The position code is computed from normalised coordinates
for whatever grid arrives, so any input size works (224 px -> 14x14, 128 px -> 8x8).

Parameters (defaults, 14 classes): 7,290,072 = DenseNet121 to denseblock3 4,267,392
+ EfficientNet-B3 to stage 5 (blocks.4) 2,190,154 + alignment 297,984 + attention 527,360
+ classifier 7,182. Tapping both at stride 32 gives 17,953,206; at stride 8, 2,140,156
(tests check the default count).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cxr.models.backbones import create_timm_backbone
from cxr.models.base import CXRModel
from cxr.models.fusion import DENSE_ARCH, EFF_ARCH, fusion_weights

_STRIDE_INDEX = {8: 2, 16: 3, 32: 4}  # timm feature_info index of each tap stride


def sine_position_2d(h: int, w: int, dim: int, device=None, dtype=torch.float32,
                     temperature: float = 10000.0) -> torch.Tensor:
    """(h*w, dim) DETR-style sine/cosine code of normalised (y, x): half the channels for y,
    half for x. Normalised coordinates make it the same anatomy code at every input size."""
    if dim % 4:
        raise ValueError(f"position code needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    freq = temperature ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    ay, ax = ys[:, None] * freq, xs[:, None] * freq  # (h, q), (w, q)
    code_y = torch.cat([ay.sin(), ay.cos()], dim=1)[:, None, :].expand(h, w, 2 * quarter)
    code_x = torch.cat([ax.sin(), ax.cos()], dim=1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([code_y, code_x], dim=2).reshape(h * w, dim).to(dtype)


class CrossAttention(nn.Module):
    """Query tokens attend to context tokens: LayerNorm(q + MHA(q + pos, c + pos, c))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, c: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        out = self.attn(q + pos, c + pos, c, need_weights=False)[0]
        return self.norm(q + out)


class BidirectionalFusion(nn.Module):
    """Two aligned (B, dim, h, w) maps -> the fused (B, 2*dim, h, w) map."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.dense_from_eff = CrossAttention(dim, heads)
        self.eff_from_dense = CrossAttention(dim, heads)

    def forward(self, d: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        b, c, h, w = d.shape
        pos = sine_position_2d(h, w, c, d.device, d.dtype)
        dt, et = d.flatten(2).transpose(1, 2), e.flatten(2).transpose(1, 2)  # (B, h*w, dim)
        fused = torch.cat([self.dense_from_eff(dt, et, pos), self.eff_from_dense(et, dt, pos)], 2)
        return fused.transpose(1, 2).reshape(b, 2 * c, h, w)


def _tapped_backbone(arch: str, stride: int, pretrained: bool,
                     weights) -> tuple[nn.Module, int, int]:
    """timm backbone pruned after the stage at `stride`; returns it, its tap index and channels."""
    if stride not in (8, 16, 32):
        raise ValueError(f"{arch} tap stride must be 8, 16 or 32, got {stride}")
    model = create_timm_backbone(arch, pretrained, weights)
    index = _STRIDE_INDEX[stride]
    assert model.feature_info[index]["reduction"] == stride, model.feature_info
    model.prune_intermediate_layers([index], prune_norm=True, prune_head=True)
    return model, index, model.feature_info[index]["num_chs"]


def _align(c_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, dim, 1, bias=False), nn.BatchNorm2d(dim))


class CrossAttentionFusionNet(CXRModel):
    model_name = "fusion_xattn"

    def __init__(self, *, input_size: int, num_classes: int = 14, pretrained: bool = False,
                 weights=None, dense_stride: int = 16, eff_stride: int = 16, dim: int = 256,
                 heads: int = 8, drop_rate: float = 0.5):
        super().__init__()
        dense_w, eff_w = fusion_weights(weights)
        self.dense, self._dense_idx, dense_ch = _tapped_backbone(DENSE_ARCH, dense_stride,
                                                                 pretrained, dense_w)
        self.eff, self._eff_idx, eff_ch = _tapped_backbone(EFF_ARCH, eff_stride, pretrained, eff_w)
        self.align_dense, self.align_eff = _align(dense_ch, dim), _align(eff_ch, dim)
        self.fusion = BidirectionalFusion(dim, heads)
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(2 * dim, num_classes))
        self.gradcam_layer = self.fusion  # its output is the fused 512-channel map
        self._set_meta(dict(num_classes=num_classes, input_size=input_size,
                            dense_stride=dense_stride, eff_stride=eff_stride, dim=dim,
                            heads=heads, drop_rate=drop_rate),
                       input_size, pretrained or weights is not None)

    def backbone_modules(self) -> list[nn.Module]:
        return [self.dense, self.eff]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dense.forward_intermediates(x, indices=[self._dense_idx],
                                             intermediates_only=True)[0]
        e = self.eff.forward_intermediates(x, indices=[self._eff_idx], intermediates_only=True)[0]
        d, e = self.align_dense(d), self.align_eff(e)
        if e.shape[-2:] != d.shape[-2:]:
            e = F.interpolate(e, size=d.shape[-2:], mode="bilinear", align_corners=False)
        return self.fusion(d, e)
