"""fusion_xattn, the project's cross-attention variant: fused 512-channel map, parameter count,
what phase 1 trains, configurable taps."""
from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from cxr.models import create_model
from cxr.models.fusion_xattn import sine_position_2d

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fusion():
    torch.manual_seed(0)
    return create_model("fusion_xattn")


def test_parameter_count(fusion):
    parts = {name: sum(p.numel() for p in getattr(fusion, name).parameters())
             for name in ["dense", "eff", "align_dense", "align_eff", "fusion", "head"]}
    assert parts == {"dense": 4_267_392, "eff": 2_190_154, "align_dense": 262_656,
                     "align_eff": 35_328, "fusion": 527_360, "head": 7_182}
    assert sum(p.numel() for p in fusion.parameters()) == 7_290_072


@pytest.mark.parametrize("size, grid", [(224, 14), (128, 8)])
def test_forward_features_is_512_channel_map(fusion, size, grid):
    fusion.eval()
    with torch.no_grad():
        assert fusion.forward_features(torch.randn(1, 3, size, size)).shape == (1, 512, grid, grid)


def test_frozen_backbones_leave_alignment_attention_head_trainable_and_grads_reach_attention(
        fusion):
    fusion.train()
    for p in fusion.backbone_parameters():
        p.requires_grad_(False)
    try:
        fusion.zero_grad(set_to_none=True)
        fusion(torch.randn(2, 3, 64, 64)).pow(2).mean().backward()
        trainable = {n.split(".")[0] for n, p in fusion.named_parameters() if p.requires_grad}
        assert trainable == {"align_dense", "align_eff", "fusion", "head"}
        assert all(p.grad is None for p in fusion.dense.parameters())
        assert all(p.grad is not None for p in fusion.head_parameters())
        for attn in (fusion.fusion.dense_from_eff.attn, fusion.fusion.eff_from_dense.attn):
            assert attn.in_proj_weight.grad.abs().sum() > 0
    finally:
        for p in fusion.parameters():
            p.requires_grad_(True)


def test_taps_width_heads_configurable_and_grids_resized():
    # DenseNet at stride 8 (16x16 at 128 px), EfficientNet at 16 (8x8): resized to DenseNet's grid
    model = create_model("fusion_xattn", dense_stride=8, eff_stride=16, dim=64, heads=4).eval()
    assert model.model_kwargs == dict(num_classes=14, input_size=224, dense_stride=8,
                                      eff_stride=16, dim=64, heads=4, drop_rate=0.5)
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 128, 128)).shape == (1, 128, 16, 16)
        assert model(torch.zeros(1, 3, 96, 96)).shape == (1, 14)
    with pytest.raises(ValueError, match="stride must be 8, 16 or 32"):
        create_model("fusion_xattn", dense_stride=4)


def test_position_code_distinguishes_cells_and_scales_with_grid():
    code = sine_position_2d(8, 8, 256)
    assert code.shape == (64, 256) and torch.isfinite(code).all()
    assert torch.cdist(code, code).add(torch.eye(64) * 1e3).min() > 0.1  # all cells distinct
    # same normalised position at two grid sizes -> same code (centre of 3x3 and of 1x1)
    assert torch.allclose(sine_position_2d(3, 3, 64)[4], sine_position_2d(1, 1, 64)[0])
    assert not torch.allclose(sine_position_2d(3, 3, 64)[0], sine_position_2d(1, 1, 64)[0])


def test_weights_dict_loads_both_backbones(tmp_path):
    torch.manual_seed(5)
    states = {}
    for arch in ["densenet121", "efficientnet_b3"]:
        states[arch] = timm.create_model(arch).state_dict()
        save_file(states[arch], tmp_path / f"{arch}.safetensors")
    model = create_model("fusion_xattn",
                         weights={a: tmp_path / f"{a}.safetensors" for a in states})
    assert model.pretrained_backbone
    for module, arch in [(model.dense, "densenet121"), (model.eff, "efficientnet_b3")]:
        loaded = module.state_dict()
        assert loaded and all(torch.equal(v, states[arch][k]) for k, v in loaded.items())


def test_weights_must_name_both_backbones(tmp_path):
    with pytest.raises(ValueError, match="dict with keys 'densenet121' and 'efficientnet_b3'"):
        create_model("fusion_xattn", weights=tmp_path / "one.safetensors")
    with pytest.raises(FileNotFoundError, match="densenet121 weights file not found"):
        create_model("fusion_xattn", weights={"densenet121": tmp_path / "a",
                                        "efficientnet_b3": tmp_path / "b"})
