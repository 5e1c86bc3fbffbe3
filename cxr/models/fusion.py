"""`fusion`: the report's Dense-Efficient Attention-Fusion Network, to the parameter.

    x -> DenseNet121 to conv5_block16_concat (timm `features` without norm5): 1024 ch, stride 32
         -> 1x1 conv with bias (no BatchNorm) -> 256 ch ------------------------------------+
    x -> EfficientNet-B3 to block6a_expand_activation (stem, stages 1-5, then stage 6's first  |
         block's expansion: `blocks[5][0].conv_pw` + `bn1` with its SiLU): 816 ch, stride 16  |
         -> 1x1 conv with bias (no BatchNorm) -> 256 ch ------------------------------------+
    -> the two maps resized (bilinear) to one grid and concatenated: 512 ch
    -> ONE self-attention layer, SAGAN-style: x + gamma * attention(x), where attention(x) is
       softmax over positions of q k^T / sqrt(512) applied to v (`scaled_attention=False`: no
       scale, as SAGAN; the report does not say); q, k, v are 1x1 convolutions
       512 -> 512 with bias; gamma is a learned scalar that starts at 0, as in SAGAN, so the
       layer starts as the identity and learns how much attention to mix in
       = forward_features: the attention-refined fused map (Grad-CAM target)
    -> GAP (512 values) -> Dropout 0.5 -> Dense 14 (logits; the sigmoid is applied outside)

    from cxr.models import create_model
    m = create_model("fusion")                                   # random init, 14x14 grid at 224 px
    m = create_model("fusion", grid="dense")                     # DenseNet's grid: 7x7 at 224 px
    m = create_model("fusion", drop_path_rate=0.2)               # Keras EfficientNet's drop path
    m = create_model("fusion", pretrained=True)                  # both backbones from the timm hub
    m = create_model("fusion", weights={"densenet121": "dn.safetensors",
                                        "efficientnet_b3": "b3.safetensors"})

Trainable parameters (14 classes), the report's 10,521,273 exactly:
    DenseNet121 without norm5           6,951,808  (timm features 6,953,856 - norm5 2,048)
    EfficientNet-B3 to blocks[5][0].bn1 2,302,762
    align DenseNet  1024*256 + 256        262,400
    align EffNet     816*256 + 256        209,152
    attention   3 * (512*512 + 512) + 1   787,969  (q, k, v + gamma)
    head              512*14 + 14           7,182
    total                              10,521,273
The report's total, 10,638,528, adds what Keras counts as non-trainable: the BatchNorm moving
mean and variance of both backbones (81,600 + 35,648, torch's running_mean / running_var) and
EfficientNet's input Normalization layer (7; here the ImageNet mean/std of `preprocess`).

The common grid is EfficientNet's (`grid="eff"`, stride 16: 14x14 at 224 px, 8x8 at the
demo's 128 px): DenseNet's map is upsampled to it. Grad-CAM is computed on this map, so it
gets four times the cells of DenseNet's 7x7 (4x4 at 128 px, too coarse to point at a nodule).
The cost is small: one 224 px forward pass is 3.70 GMAC with grid "eff" (attention 0.19) and
3.55 with "dense" (attention 0.04), 1.20 and 1.16 at 128 px (torch.utils.flop_counter), so
about 4% more compute on CPU for the finer map.
`grid="dense"` downsamples EfficientNet's map to DenseNet's grid instead. The report says only
that the maps were "resized to match spatially". The 1x1 alignment runs before the resize;
both are linear, so the order changes nothing but the cost.

Both taps come from complete timm models loaded strictly (hub or local file, classifier
kept so timm checks every key) and then cut: no kept layer can be silently random.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cxr.models.backbones import create_timm_backbone
from cxr.models.base import CXRModel

DENSE_ARCH, EFF_ARCH = "densenet121", "efficientnet_b3"
GRIDS = ("eff", "dense")


def fusion_weights(weights) -> tuple:
    """(DenseNet121 file, EfficientNet-B3 file) from the `weights` dict, or (None, None)."""
    if weights is None:
        return None, None
    if not isinstance(weights, dict) or set(weights) != {DENSE_ARCH, EFF_ARCH}:
        raise ValueError(f"fusion weights must be a dict with keys {DENSE_ARCH!r} and {EFF_ARCH!r} "
                         f"(paths to timm ImageNet checkpoints), got {weights!r}")
    return weights[DENSE_ARCH], weights[EFF_ARCH]


def densenet121_to_concat(pretrained: bool, weights) -> nn.Sequential:
    """timm DenseNet121's `features` without the final BatchNorm + ReLU (`norm5`): the output
    of the last dense block, Keras's conv5_block16_concat."""
    full = create_timm_backbone(DENSE_ARCH, pretrained, weights)
    return nn.Sequential(OrderedDict(
        (name, module) for name, module in full.features.named_children() if name != "norm5"))


def efficientnet_b3_to_block6a_expand(pretrained: bool, weights,
                                      drop_path_rate: float = 0.0) -> nn.Sequential:
    """timm EfficientNet-B3 through stage 5 and the expansion (1x1 conv + BN + SiLU) of stage
    6's first block: Keras's block6a_expand_activation."""
    full = create_timm_backbone(EFF_ARCH, pretrained, weights, drop_path_rate)
    block6a = full.blocks[5][0]
    return nn.Sequential(OrderedDict(
        conv_stem=full.conv_stem, bn1=full.bn1, blocks=full.blocks[:5],
        block6a_expand=nn.Sequential(OrderedDict(conv_pw=block6a.conv_pw, bn1=block6a.bn1))))


class SelfAttention2d(nn.Module):
    """SAGAN self-attention over the h*w positions of a (B, C, h, w) map, C -> C projections."""

    def __init__(self, channels: int, scaled: bool = True):
        super().__init__()
        self.scale = None if scaled else 1.0  # None: SDPA's 1/sqrt(C); 1.0: SAGAN's raw q.k
        self.query = nn.Conv2d(channels, channels, 1)
        self.key = nn.Conv2d(channels, channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (proj(x).flatten(2).transpose(1, 2)  # (B, h*w, C)
                   for proj in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # softmax over positions
        return x + self.gamma * out.transpose(1, 2).reshape(b, c, h, w)


class FusionNet(CXRModel):
    model_name = "fusion"

    def __init__(self, *, input_size: int, num_classes: int = 14, pretrained: bool = False,
                 weights=None, grid: str = "eff", dim: int = 256, drop_rate: float = 0.5,
                 scaled_attention: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        if grid not in GRIDS:
            raise ValueError(f"fusion grid must be one of {GRIDS}, got {grid!r}")
        dense_w, eff_w = fusion_weights(weights)
        self.grid = grid
        self.dense = densenet121_to_concat(pretrained, dense_w)
        self.eff = efficientnet_b3_to_block6a_expand(pretrained, eff_w, drop_path_rate)
        self.align_dense = nn.Conv2d(1024, dim, 1)
        self.align_eff = nn.Conv2d(816, dim, 1)
        self.attention = SelfAttention2d(2 * dim, scaled_attention)
        self.head = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(2 * dim, num_classes))
        self.gradcam_layer = self.attention  # its output is the attention-refined fused map
        self._set_meta(dict(num_classes=num_classes, input_size=input_size, grid=grid, dim=dim,
                            drop_rate=drop_rate, scaled_attention=scaled_attention,
                            drop_path_rate=drop_path_rate),
                       input_size, pretrained or weights is not None)

    def backbone_modules(self) -> list[nn.Module]:
        return [self.dense, self.eff]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        d = self.align_dense(self.dense(x))
        e = self.align_eff(self.eff(x))
        size = (e if self.grid == "eff" else d).shape[-2:]
        d, e = (F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                if m.shape[-2:] != size else m for m in (d, e))
        return self.attention(torch.cat([d, e], dim=1))
