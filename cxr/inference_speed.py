"""One film at a time, fast on a CPU: the model behind the dashboard's Predict and Triage pages.

    from cxr.checkpoint import load_model
    from cxr.inference_speed import InferenceModel
    model, meta = load_model("checkpoints/demo-fusion/best.pt")   # eval mode, CPU
    fast = InferenceModel(model)          # exports forward_features to ONNX Runtime (seconds, once)
    r = mc_predict(fast, x, passes=25, seed=0)          # the backbone runs here ...
    maps = cam_maps(fast, x[0], ["Effusion"])           # ... and not again here: same x, cached

`InferenceModel` keeps the Model contract (ARCHITECTURE.md), so `cxr.uncertainty.mc_predict`,
`cxr.explain.cam_maps` and `cxr.dashboard.analysis` take it as they take the model itself.
Only `forward_features`, the backbone, changes, in two ways:

- **ONNX Runtime runs it on CPU** (`backend="onnxruntime"`, the default for a CPU model): the
  map equals torch's to about 1e-5 (float32 both; tests/test_inference_speed.py) and comes
  2.5x faster at 224 px on one thread (bench/bench_predict_page.py). Why: at batch 1 with one
  thread torch sends every 1x1 convolution to its slow im2col path (`_slow_conv2d_forward`,
  53% of fusion's forward in torch.profiler), while ONNX Runtime folds each BatchNorm into
  its convolution and fuses the activations. The dropout head and the Grad-CAM backward stay
  in torch: they are the model's own `classify` and `forward_head`, a few milliseconds.
  On CUDA or MPS the backbone stays torch's (`backend="torch"`).
- **The last films' maps are kept** (`cache_films`), keyed by the input tensor's bytes: the
  Predict page runs MC dropout and then a Grad-CAM per finding on the same film, and before
  this each of them ran the backbone. A different film is a different tensor and a new
  forward pass; nothing else can make two inputs share a key.

The exported graph is a snapshot of the weights at construction: build a new InferenceModel
for a new checkpoint (the dashboard keys it by the checkpoint file's mtime). It is for
inference only: `forward_features` refuses train mode (BatchNorm is baked in as in eval), and
hooks on the backbone's layers never fire (use `cam_maps`, which needs none).
"""
from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections import OrderedDict

import torch
from torch import nn

from cxr.models.base import CXRModel

BACKENDS = ("auto", "onnxruntime", "torch")
CACHE_FILMS = 8  # maps kept: a fusion map at 224 px is 512x14x14 floats, 400 KB


def pick_backend(model: nn.Module, backend: str = "auto") -> str:
    """auto: ONNX Runtime for a model on the CPU, torch on CUDA or MPS."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    device = next(model.parameters()).device
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" else "torch"
    if backend == "onnxruntime" and device.type != "cpu":
        raise ValueError(f"backend onnxruntime runs on the CPU; the model is on {device}")
    return backend


class _Features(nn.Module):
    """forward_features as a module's forward, what torch.onnx.export traces."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class OnnxFeatures:
    """model.forward_features for (B, 3, S, S) float32 CPU tensors, run by ONNX Runtime."""

    def __init__(self, model: nn.Module):
        import onnxruntime as ort
        self.size = int(model.preprocess["input_size"])
        buf = io.BytesIO()
        example = torch.zeros(1, 3, self.size, self.size)
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings():
                # The TorchScript exporter: torch.export's (the default) cannot translate
                # fusion's 3-D scaled_dot_product_attention in torch 2.14. It warns that it is
                # deprecated, and that shape checks become constants: true, the input size is
                # fixed (checked in __call__).
                for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
                    warnings.simplefilter("ignore", category)
                torch.onnx.export(_Features(model), (example,), buf, dynamo=False,
                                  opset_version=17, input_names=["x"], output_names=["features"],
                                  dynamic_axes={"x": {0: "batch"}, "features": {0: "batch"}})
        finally:
            model.train(was_training)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # OMP_NUM_THREADS applies to both
        options.inter_op_num_threads = 1
        # No busy-waiting between operators: the dashboard shares its cores with training jobs,
        # where spinning threads (torch's OpenMP ones included) steal the cores they wait for.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(buf.getvalue(), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, self.size, self.size):
            raise ValueError(f"the ONNX backbone takes (B, 3, {self.size}, {self.size}) inputs "
                             f"(the model's input size), got {tuple(x.shape)}")
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"x": array})[0])


class InferenceModel(CXRModel):
    """`model` with a faster, cached backbone; every other part is the model's own."""

    def __init__(self, model: CXRModel, backend: str = "auto", cache_films: int = CACHE_FILMS):
        super().__init__()
        if cache_films < 0:
            raise ValueError(f"cache_films must be >= 0, got {cache_films}")
        self.backend = pick_backend(model, backend)
        self.model = model.eval()
        for name in ("model_name", "model_kwargs", "labels", "preprocess", "pretrained_backbone"):
            setattr(self, name, getattr(model, name))
        self._onnx = OnnxFeatures(model) if self.backend == "onnxruntime" else None
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._cache_films = cache_films
        self._lock = threading.Lock()  # Streamlit sessions are threads sharing this object
        self.eval()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("InferenceModel is for inference: call .eval() first "
                               "(its backbone is exported in eval mode)")
        key = _key(x)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key].clone()  # callers may mark it requires_grad
        features = self._compute(x)
        with self._lock:
            self._cache[key] = features
            while len(self._cache) > self._cache_films:
                self._cache.popitem(last=False)
        return features.clone()

    def clear_cache(self) -> None:
        """Forget the kept maps (benchmarks time the backbone with it; memory)."""
        with self._lock:
            self._cache.clear()

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        if self._onnx is not None:
            return self._onnx(x)
        with torch.inference_mode():
            return self.model.forward_features(x)

    def pool_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.model.pool_features(f)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.classify(pooled)

    def backbone_modules(self) -> list[nn.Module]:
        return self.model.backbone_modules()


def _key(x: torch.Tensor) -> tuple:
    """The input's identity by content: shape, dtype, device and a hash of its bytes."""
    data = x.detach().to("cpu").contiguous().numpy().tobytes()
    return (tuple(x.shape), str(x.dtype), str(x.device),
            hashlib.blake2b(data, digest_size=16).hexdigest())
