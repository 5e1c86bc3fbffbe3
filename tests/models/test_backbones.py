"""densenet121 / efficientnet_b0: the report's head, freezing, and ImageNet weights from a file."""
from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from cxr.models import create_model, model_uses_pretrained

torch.set_num_threads(1)


def count(params) -> int:
    return sum(p.numel() for p in params)


@pytest.mark.parametrize("name, head, features", [("densenet121", 531_982, 1024),
                                                  ("efficientnet_b0", 663_054, 1280)])
def test_head_parameter_count_and_map(name, head, features):
    model = create_model(name).eval()
    assert count(model.head_parameters()) == head
    # the report's two rates, each on the layer it names (MODEL_CARD.md, "Baseline heads")
    assert [m.p for m in model.head if isinstance(m, torch.nn.Dropout)] == [0.4, 0.5]
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, features, 2, 2)


def test_frozen_backbone_trains_only_the_head():
    model = create_model("efficientnet_b0")
    for p in model.backbone_parameters():
        p.requires_grad_(False)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head.parameters())


@pytest.fixture(scope="module")
def densenet_file(tmp_path_factory):
    """A timm densenet121 ImageNet-format checkpoint (random values) in both formats."""
    torch.manual_seed(3)
    state = timm.create_model("densenet121").state_dict()
    folder = tmp_path_factory.mktemp("weights")
    save_file(state, folder / "densenet121.safetensors")
    torch.save(state, folder / "densenet121.pth")
    return folder, state


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_weights_file_loads_into_backbone(densenet_file, suffix):
    folder, state = densenet_file
    model = create_model("densenet121", weights=folder / f"densenet121.{suffix}")
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(state) - {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert model_uses_pretrained(model) and model.pretrained_backbone is True


def test_missing_weights_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        create_model("densenet121", weights=tmp_path / "nope.safetensors")


def test_incomplete_weights_file_is_an_error_not_random_init(densenet_file, tmp_path):
    _, state = densenet_file
    partial = {k: v for k, v in state.items() if "denseblock1" not in k}
    save_file(partial, tmp_path / "partial.safetensors")
    with pytest.raises(RuntimeError, match="Missing key"):
        create_model("densenet121", weights=tmp_path / "partial.safetensors")


def test_drop_path_rate_is_keras_stochastic_depth_for_efficientnet_only():
    """`drop_path_rate` (MODEL_CARD: Keras EfficientNet drops residual blocks at 0.2 while
    training; timm's default is 0): blocks get DropPath, eval mode stays deterministic."""
    from timm.layers import DropPath
    m = create_model("efficientnet_b0", input_size=32, drop_path_rate=0.2)
    rates = [d.drop_prob for d in m.modules() if isinstance(d, DropPath)]
    assert rates and max(rates) == pytest.approx(0.2, abs=0.02)
    assert m.model_kwargs["drop_path_rate"] == 0.2
    assert not any(isinstance(d, DropPath) for d in create_model("efficientnet_b0",
                                                                 input_size=32).modules())
    m.eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(m(x), m(x))
    with pytest.raises(ValueError, match="no residual blocks"):
        create_model("densenet121", input_size=32, drop_path_rate=0.2)


@pytest.mark.parametrize("name, total", [("densenet121", 7_569_486),
                                         ("efficientnet_b0", 4_712_625)])
def test_keras_total_is_the_reports(name, total):
    """Keras's "Total params" (Figures 3b, 3c) count the BatchNorm moving mean and variance as
    non-trainable parameters, and EfficientNet's input Normalization layer (mean 3, variance 3,
    count 1); the head is the report's trainable part."""
    model = create_model(name)
    moving = sum(b.numel() for key, b in model.named_buffers()
                 if key.endswith(("running_mean", "running_var")))
    normalization = 7 if name.startswith("efficientnet") else 0
    assert count(model.parameters()) + moving + normalization == total


def test_the_two_head_dropouts_have_their_own_rates():
    model = create_model("densenet121", drop_rate=0.3, hidden_drop_rate=0.4, input_size=32)
    assert [m.p for m in model.head if isinstance(m, torch.nn.Dropout)] == [0.3, 0.4]
    assert model.model_kwargs["drop_rate"] == 0.3
    assert model.model_kwargs["hidden_drop_rate"] == 0.4
    # the first dropout sits right after the pooling: the "MC Dropout layer" of the report
    assert isinstance(model.head[0], torch.nn.Dropout) and model.head[0].p == 0.3


def test_a_checkpoint_saved_before_hidden_drop_rate_keeps_both_dropouts_at_drop_rate(tmp_path):
    """Old checkpoints stored only `drop_rate`, which both dropouts used: they load unchanged."""
    from cxr.checkpoint import load_model, save_checkpoint
    model = create_model("efficientnet_b0", input_size=32, hidden_drop_rate=0.4)
    path = save_checkpoint(tmp_path / "old.pt", model, {})
    ckpt = torch.load(path, weights_only=True)
    del ckpt["meta"]["model"]["kwargs"]["hidden_drop_rate"]  # as an older version wrote it
    torch.save(ckpt, path)
    loaded, _ = load_model(path)
    assert [m.p for m in loaded.head if isinstance(m, torch.nn.Dropout)] == [0.4, 0.4]
    new, _ = load_model(save_checkpoint(tmp_path / "new.pt", create_model(
        "efficientnet_b0", input_size=32), {}))
    assert [m.p for m in new.head if isinstance(m, torch.nn.Dropout)] == [0.4, 0.5]
