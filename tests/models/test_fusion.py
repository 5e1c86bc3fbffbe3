"""fusion: the report's network to the parameter, its grids, attention, strict weight loading."""
from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from cxr.models import create_model

torch.set_num_threads(1)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def fusion():
    torch.manual_seed(0)
    return create_model("fusion")


def test_parameter_count_is_the_reports(fusion):
    parts = {name: count(getattr(fusion, name))
             for name in ["dense", "eff", "align_dense", "align_eff", "attention", "head"]}
    assert parts == {"dense": 6_951_808, "eff": 2_302_762, "align_dense": 262_400,
                     "align_eff": 209_152, "attention": 787_969, "head": 7_182}
    assert count(fusion) == 10_521_273  # the report's "trainable parameters"
    # Keras's total adds BatchNorm moving mean/variance and EfficientNet's Normalization (7)
    moving = sum(b.numel() for name, b in fusion.named_buffers()
                 if name.endswith(("running_mean", "running_var")))
    assert count(fusion) + moving + 7 == 10_638_528


def test_layers_are_the_reports(fusion):
    assert "norm5" not in dict(fusion.dense.named_children())  # DenseNet stops at the concat
    assert fusion.eff.block6a_expand.conv_pw.out_channels == 816
    assert isinstance(fusion.eff.block6a_expand.bn1.act, torch.nn.SiLU)
    for align in (fusion.align_dense, fusion.align_eff):  # 1x1, with bias, no BatchNorm
        assert align.kernel_size == (1, 1) and align.bias is not None and align.out_channels == 256
    attention = fusion.attention
    assert all(p.in_channels == p.out_channels == 512 and p.bias is not None
               for p in (attention.query, attention.key, attention.value))
    assert attention.gamma.numel() == 1 and attention.gamma.item() == 0.0  # SAGAN's init
    assert [type(m) for m in fusion.head] == [torch.nn.Dropout, torch.nn.Linear]
    assert fusion.head[0].p == 0.5
    assert fusion.gradcam_layer is attention


@pytest.mark.parametrize("grid, size, cells", [("eff", 224, 14), ("eff", 128, 8),
                                                ("dense", 224, 7), ("dense", 128, 4)])
def test_feature_map_on_either_grid(fusion, grid, size, cells):
    model = fusion if grid == "eff" else create_model("fusion", grid="dense")
    assert model.model_kwargs["grid"] == grid
    model.eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, size, size)).shape == (1, 512, cells, cells)


def test_attention_starts_as_identity_and_mixes_positions_once_gamma_moves():
    torch.manual_seed(0)
    model = create_model("fusion", input_size=64, dim=16).eval()
    x = torch.randn(2, 32, 3, 3)
    with torch.no_grad():
        assert torch.equal(model.attention(x), x)
        model.attention.gamma.fill_(1.0)
        y = model.attention(x)
        x2 = x.clone()
        x2[:, :, 0, 0] += 1.0  # one position changes: every position's output changes
        assert (model.attention(x2) - y)[:, :, 2, 2].abs().max() > 0


def test_attention_scale_is_sqrt_c_by_default_and_none_as_in_sagan():
    """scaled_attention (MODEL_CARD's "report vs this project"): softmax(q k^T / sqrt(C)) by
    default, softmax(q k^T) with scaled_attention=False; checked against the formula."""
    from cxr.models.fusion import SelfAttention2d
    torch.manual_seed(0)
    x = torch.randn(1, 8, 2, 3)
    for scaled in (True, False):
        layer = SelfAttention2d(8, scaled).eval()
        layer.gamma.data.fill_(1.0)
        q, k, v = (p(x).flatten(2).transpose(1, 2) for p in (layer.query, layer.key, layer.value))
        weights = torch.softmax(q @ k.transpose(1, 2) / (8 ** 0.5 if scaled else 1.0), dim=-1)
        expected = x + (weights @ v).transpose(1, 2).reshape(1, 8, 2, 3)
        with torch.no_grad():
            assert torch.allclose(layer(x), expected, atol=1e-5)
    model = create_model("fusion", input_size=64, dim=16, scaled_attention=False)
    assert model.model_kwargs["scaled_attention"] is False and model.attention.scale == 1.0


def test_frozen_backbones_train_alignment_attention_head(fusion):
    fusion.train()
    for p in fusion.backbone_parameters():
        p.requires_grad_(False)
    try:
        fusion.zero_grad(set_to_none=True)
        fusion(torch.randn(2, 3, 64, 64)).pow(2).mean().backward()
        trainable = {n.split(".")[0] for n, p in fusion.named_parameters() if p.requires_grad}
        assert trainable == {"align_dense", "align_eff", "attention", "head"}
        assert all(p.grad is None for p in fusion.backbone_parameters())
        assert fusion.attention.gamma.grad.abs() > 0  # gamma = 0: the gate learns first
    finally:
        for p in fusion.parameters():
            p.requires_grad_(True)


def test_bad_grid_is_named():
    with pytest.raises(ValueError, match="grid must be one of.*'middle'"):
        create_model("fusion", grid="middle")


def _timm_key(backbone: str, key: str) -> str:
    """Where a pruned backbone's tensor sits in the full timm model."""
    if backbone == "dense":
        return "features." + key
    return key.replace("block6a_expand.", "blocks.5.0.")


def test_weights_files_load_every_kept_layer_strictly(tmp_path):
    torch.manual_seed(5)
    states = {}
    for arch in ["densenet121", "efficientnet_b3"]:
        states[arch] = timm.create_model(arch).state_dict()
        save_file(states[arch], tmp_path / f"{arch}.safetensors")
    model = create_model("fusion", weights={a: tmp_path / f"{a}.safetensors" for a in states})
    assert model.pretrained_backbone
    for backbone, arch in [("dense", "densenet121"), ("eff", "efficientnet_b3")]:
        loaded = getattr(model, backbone).state_dict()
        assert loaded and all(torch.equal(v, states[arch][_timm_key(backbone, k)])
                              for k, v in loaded.items())
    # a file lacking a layer the tap keeps is an error, never a random layer
    partial = {k: v for k, v in states["efficientnet_b3"].items()
               if not k.startswith("blocks.5.0.")}
    save_file(partial, tmp_path / "partial.safetensors")
    with pytest.raises(RuntimeError, match="Missing key"):
        create_model("fusion", weights={"densenet121": tmp_path / "densenet121.safetensors",
                                        "efficientnet_b3": tmp_path / "partial.safetensors"})


def test_weights_must_name_both_backbones(tmp_path):
    with pytest.raises(ValueError, match="dict with keys 'densenet121' and 'efficientnet_b3'"):
        create_model("fusion", weights=tmp_path / "one.safetensors")
    with pytest.raises(FileNotFoundError, match="densenet121 weights file not found"):
        create_model("fusion", weights={"densenet121": tmp_path / "a",
                                        "efficientnet_b3": tmp_path / "b"})
