"""The registry's self-description and the uniform Model contract (ARCHITECTURE.md) on every
registry model."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cxr.labels import FINDINGS
from cxr.models import MODELS, create_model, list_models, model_info, model_uses_pretrained

torch.set_num_threads(1)
NAMES = ["simple_cnn", "densenet121", "efficientnet_b0", "fusion", "fusion_xattn"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: create_model(name).eval() for name in NAMES}


def test_registry_names_and_unknown_name_error():
    assert list(MODELS) == NAMES
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*simple_cnn, densenet121"):
        create_model("resnet50")


def test_each_model_says_what_it_is():
    assert list_models(pretrained=False) == ["simple_cnn"]
    assert list_models(pretrained=True) == [n for n in NAMES if n != "simple_cnn"]
    assert [n for n in NAMES if MODELS[n].report_network is None] == ["fusion_xattn"]  # ours
    assert "Figure 4" in model_info("fusion").report_network
    for name, info in MODELS.items():
        assert info.name == name and info.description and info.feature_map
        assert isinstance(info.pretrained, bool) and info.input_size == 224


def test_reading_the_registry_imports_no_torch():
    """The Train page, `cxr train --help` and config validation read it without torch/timm."""
    code = ("import sys; from cxr.models import MODELS, list_models; list_models(); "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
def test_logits_shape_at_224_and_128(models, name):
    model = models[name]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 14)
        out = model(torch.randn(2, 3, 128, 128))
    assert out.shape == (2, 14) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_forward_decomposition(models, name):
    model = models[name]
    assert model.model_name == name and model.labels == FINDINGS
    assert model.preprocess["input_size"] == MODELS[name].input_size
    assert model.preprocess == {"input_size": 224, "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225]}
    assert json.loads(json.dumps(model.model_kwargs)) == model.model_kwargs
    assert not model_uses_pretrained(model)
    x = torch.randn(2, 3, 64, 64)
    seen = []
    hook = model.gradcam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        f = model.forward_features(x)
        logits = model(x)
    hook.remove()
    assert f.ndim == 4 and f.shape[0] == 2
    assert torch.equal(seen[0], f), "gradcam_layer's output must be forward_features' map"
    assert torch.allclose(model.classify(model.pool_features(f)), logits, atol=1e-6)
    assert torch.allclose(model.forward_head(f), logits, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_backbone_and_head_parameters_partition_the_model(models, name):
    model = models[name]
    backbone = [id(p) for p in model.backbone_parameters()]
    head = [id(p) for p in model.head_parameters()]
    assert backbone and head and not set(backbone) & set(head)
    assert sorted(backbone + head) == sorted(id(p) for p in model.parameters())
    assert {id(p) for p in model.head.parameters()} <= set(head)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    torch.manual_seed(1)
    model = create_model(name, input_size=128)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))  # moves BatchNorm running stats off their init
    model.eval()
    fresh = create_model(model.model_name, **model.model_kwargs).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
        fresh.load_state_dict(model.state_dict())
        assert torch.equal(fresh(x), model(x))
    assert fresh.preprocess["input_size"] == 128


def test_a_model_without_imagenet_weights_refuses_them():
    for kwargs in ({"pretrained": True}, {"weights": "w.safetensors"}):
        with pytest.raises(ValueError, match="simple_cnn has no ImageNet weights"):
            create_model("simple_cnn", **kwargs)
