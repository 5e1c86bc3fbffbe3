"""Checkpoints: tensors + JSON-safe metadata, written atomically, read with weights_only=True.

    >>> from cxr.checkpoint import load_model
    >>> model, meta = load_model("checkpoints/demo-fusion/best.pt")   # eval mode, on CPU
    >>> meta["model"], meta["split"]["content_hash"], meta["metrics"]["val_macro_auc"]

A checkpoint is {"state_dict", "meta", "train_state" (optional: optimizer, scheduler, RNG,
loop counters)}; ARCHITECTURE.md ("Checkpoint") lists meta's keys. It holds only tensors,
numbers, strings, lists and dicts, so `torch.load(path, weights_only=True)` reads it without
unpickling code. The model is rebuilt from `meta` alone (`create_model(name, **kwargs)` +
`load_state_dict(strict=True)`); nothing falls back to random weights: a missing or unreadable
file is an error naming it.
"""
from __future__ import annotations

import json
import platform
import subprocess
from functools import cache
from pathlib import Path

import torch

from cxr.atomic import atomic_open

REQUIRED_META = ("model", "labels", "preprocess")
# `fusion` named the bidirectional cross-attention network until the report's exact network
# took that name; those checkpoints are recognised by the cross-attention's kwargs.
RENAMED = {"fusion": ("fusion_xattn", {"dense_stride", "eff_stride", "heads"})}
# kwargs a model gained later -> the saved kwarg whose value an older checkpoint implies: the
# baselines' two head dropouts both used `drop_rate` until `hidden_drop_rate` (default 0.5) split
# them, so a checkpoint without it keeps its second dropout at its `drop_rate`.
ADDED_KWARGS = {name: {"hidden_drop_rate": "drop_rate"}
                for name in ("densenet121", "efficientnet_b0")}


class CheckpointError(ValueError):
    """A file that is not a readable cxr checkpoint (truncated, foreign, or lacking keys)."""


def library_versions() -> dict:
    import numpy
    import timm

    import cxr
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "cxr": cxr.__version__, "timm": timm.__version__}


@cache
def git_commit() -> str | None:
    """HEAD of the git checkout holding this package, or None (installed wheel, no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _json_safe(meta: dict) -> dict:
    """meta as plain JSON types (a str subclass such as torch.__version__ or a tuple would
    make weights_only loading fail); anything JSON cannot hold is an error."""
    try:
        return json.loads(json.dumps(meta, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint metadata must be JSON-safe: {exc}") from None


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def model_meta(model: torch.nn.Module) -> dict:
    """The part of `meta` that rebuilds the model: registry name, kwargs, labels, preprocessing."""
    model = unwrap(model)
    return {"model": {"name": model.model_name, "kwargs": dict(model.model_kwargs)},
            "labels": list(model.labels), "preprocess": dict(model.preprocess)}


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict,
                    train_state: dict | None = None) -> Path:
    """Write {"state_dict", "meta", "train_state"} to `path` via a temp file + os.replace, so a
    reader (or a crash) never sees half a file. `meta` is completed with the model's own
    description, library versions and the git commit where missing."""
    path = Path(path)
    meta = {**model_meta(model), **meta}
    meta.setdefault("versions", library_versions())
    meta.setdefault("git_commit", git_commit())
    meta = _json_safe(meta)
    state = {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}
    payload = {"state_dict": state, "meta": meta}
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_open(path, "wb") as f:  # temp file + fsync + rename
        torch.save(payload, f)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict, read with weights_only=True; CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle of code objects, random bytes, ...
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "error" in ln.lower() and ":" in ln),
                   lines[0] if lines else "")
        raise CheckpointError(f"checkpoint {path} cannot be read with weights_only=True "
                              f"({type(exc).__name__}: {why[:300]}); it may be truncated or "
                              "not a cxr checkpoint") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "meta" not in ckpt:
        raise CheckpointError(f"checkpoint {path} lacks 'state_dict'/'meta': not a cxr checkpoint")
    absent = [k for k in REQUIRED_META if k not in ckpt["meta"]]
    if absent:
        raise CheckpointError(f"checkpoint {path}: metadata lacks {absent}")
    return ckpt


def checkpoint_model_name(meta: dict) -> str:
    """The registry name that rebuilds a checkpoint's model: the saved name, or the model's new
    name when it was saved under an old one (RENAMED)."""
    name = meta["model"]["name"]
    new_name, old_kwargs = RENAMED.get(name, (name, set()))
    return new_name if old_kwargs & set(meta["model"].get("kwargs", {})) else name


def saved_kwargs(name: str, kwargs: dict) -> dict:
    """The kwargs that rebuild a checkpoint's model as it was trained: the saved ones, plus any
    kwarg added since (ADDED_KWARGS) set to what the older code used."""
    kwargs = dict(kwargs)
    for added, source in ADDED_KWARGS.get(name, {}).items():
        if added not in kwargs and source in kwargs:
            kwargs[added] = kwargs[source]
    return kwargs


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode on `device`, meta) rebuilt from the checkpoint alone. A model saved
    under an old name comes back under its new one: meta["model"] then has `name` (new) and
    `saved_as` (old)."""
    from cxr.models import create_model

    ckpt = load_checkpoint(path)
    meta = ckpt["meta"]
    spec = meta["model"]
    name = checkpoint_model_name(meta)
    if name != spec["name"]:
        meta["model"] = spec = {**spec, "name": name, "saved_as": spec["name"]}
    try:
        kwargs = {"num_classes": len(meta["labels"]),
                  **saved_kwargs(name, spec.get("kwargs", {}))}
        model = create_model(name, pretrained=False, **kwargs)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        hint = (" (if it holds the cross-attention network, saved as `fusion` by an older "
                "version, rebuild it with create_model('fusion_xattn', ...) and load its "
                "state_dict)" if name == "fusion" else "")
        raise CheckpointError(f"checkpoint {path}: cannot rebuild model {name!r} with "
                              f"{spec.get('kwargs')}{hint}: {exc}") from None
    model.preprocess = dict(meta["preprocess"])  # the size it was trained at, not the default
    model.labels = tuple(meta["labels"])
    return model.to(device).eval(), meta
