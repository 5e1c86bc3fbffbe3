"""simple_cnn: the report's layer stack and parameter count, default and report=True."""
from __future__ import annotations

import torch
from torch import nn

from cxr.models import create_model


def count(params) -> int:
    return sum(p.numel() for p in params)


def test_exactly_129870_parameters_both_ways():
    assert count(create_model("simple_cnn").parameters()) == 129_870
    report_net = create_model("simple_cnn", report=True)
    assert count(report_net.parameters()) == 129_870
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in report_net.modules())
    assert report_net.model_kwargs == dict(num_classes=14, input_size=224, report=True, hidden=256,
                                           drop_rate=0.0, batch_norm=False)


def test_report_variant_has_the_reports_output_shapes_at_224():
    """Figure 3a: conv 222, pool 111, conv 109, pool 54, conv 52, pool 26 (valid padding)."""
    model = create_model("simple_cnn", report=True).eval()
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.backbone if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 14)
    for hook in hooks:
        hook.remove()
    assert shapes == [(32, 222, 222), (32, 111, 111), (64, 109, 109), (64, 54, 54),
                      (128, 52, 52), (128, 26, 26)]


def test_norm_layers_have_no_parameters_but_normalise():
    model = create_model("simple_cnn").train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 3 and all(not list(m.parameters()) for m in norms)
    out = norms[0](torch.randn(4, 32, 8, 8) * 5 + 3)
    assert abs(out.mean().item()) < 1e-4 and abs(out.std().item() - 1) < 0.05


def test_layer_stack_is_the_reports():
    model = create_model("simple_cnn")
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 32, (3, 3)), (32, 64, (3, 3)), (64, 128, (3, 3))]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.backbone) == 3
    dense = [(m.in_features, m.out_features) for m in model.head if isinstance(m, nn.Linear)]
    assert dense == [(128, 256), (256, 14)]
    # the one dropout (for MC dropout) sits right before the last Dense layer
    assert isinstance(model.head[-2], nn.Dropout) and model.head[-2].p == 0.5


def test_map_is_stride_8_and_tiny_inputs_work():
    model = create_model("simple_cnn").eval()
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 128, 8, 8)
        assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 14)


def test_frozen_backbone_trains_only_the_head():
    model = create_model("simple_cnn")
    for p in model.backbone_parameters():
        p.requires_grad_(False)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head_parameters())
