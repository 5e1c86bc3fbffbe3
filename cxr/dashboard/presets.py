"""The Train page's presets: the report's settings (its Table 1 and text), and the CPU demo
(configs/demo.yaml).

    from cxr.dashboard.presets import PRESETS, default_preset, form_values, settings_from_form
    name = default_preset()                  # "CPU demo" without CUDA, "The report" with it
    form = form_values(PRESETS[name], model="fusion")
    form.fields                              # {"image_size": 128, "epochs": 40, ...}: the form
    form.extra                               # "lr_head=0.001\\n...": the rest, key=value lines
    settings_from_form(form.fields)          # -> jobs.launch_train's settings

A preset is a set of TrainConfig keys. Choosing one fills every field of the launch form (its
value, or TrainConfig's default where the preset does not name the key) and puts its other keys
in the form's "More settings" box, so what launches is exactly the preset unless the user
changes a field. The model field is the exception: it changes only when the preset names a
model (the demo's config trains any model). The CPU demo is read from configs/demo.yaml each
time, so the file stays the one source of the demo's settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cxr.demo import REPO
from cxr.models import model_info
from cxr.train.config import TrainConfig, read_yaml

REPORT = "The report"
CPU_DEMO = "CPU demo"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"

# The report's settings (MODEL_CARD.md, "The report vs this project"). Table 1: Adam (the
# trainer's only optimiser), batch 32, 25 epochs, lr 1e-3, minimum lr 1e-5, focal loss alpha
# 0.25 gamma 2. Its text: 224 px, ImageNet weights, a frozen-backbone phase at 1e-3 then
# fine-tuning at 1e-5, its augmentation (flip, rotation 10% of a turn, zoom 10%, brightness
# 10%, read as Keras' layers) and its 50% patient subset. Our readings where it is silent: 25
# epochs per phase (not in all), stratified rather than random sampling of the patients.
# Split by patient: the project's rule. The report does not say whether it split images or
# patients; if by image, its test patients had images in training (MODEL_CARD.md).
REPORT_VALUES = {
    "model": "fusion", "image_size": 224, "pretrained": True, "schedule": "two_phase",
    "epochs": 25, "epochs_budget": "per_phase", "batch_size": 32,
    "lr_head": 1e-3, "lr_finetune": 1e-5, "min_lr": 1e-5,
    "loss": "focal", "focal_alpha": 0.25, "focal_gamma": 2.0,
    "hflip": 0.5, "rotation": 0.1, "zoom": 0.1, "brightness": 0.1,
    "split_strategy": "patient", "patient_fraction": 0.5,
}

# The launch form's fields, as TrainConfig keys; every other key goes in "More settings".
FORM_FIELDS = ("model", "image_size", "epochs", "batch_size", "loss", "split_strategy",
               "pretrained", "weights", "max_steps_per_epoch", "max_minutes", "device")


@dataclass(frozen=True)
class Preset:
    name: str
    note: str                              # where it comes from and what it is sized for
    fixed: dict = field(default_factory=dict)  # the values, or
    path: Path | None = None               # a config YAML to read them from (each time)

    def values(self) -> dict:
        """The preset's TrainConfig keys and values, checked by TrainConfig."""
        values = read_yaml(self.path) if self.path is not None else dict(self.fixed)
        TrainConfig(**values)  # a bad key or value fails here, naming it
        return values

    def summary(self) -> str:
        """One line for the page, from the values themselves."""
        given = self.values()
        cfg = TrainConfig(**given)
        parts = [f"`{cfg.model}`" if "model" in given else "any model",
                 f"{cfg.image_size} px" if cfg.image_size else "the model's size",
                 "ImageNet weights" if cfg.pretrained else "random init",
                 f"up to {cfg.epochs} epochs" + (
                     " per phase" if cfg.schedule == "two_phase" else ""),
                 f"batch {cfg.batch_size}"]
        if cfg.max_steps_per_epoch:
            parts.append(f"{cfg.max_steps_per_epoch} steps per epoch")
        if cfg.patient_fraction < 1:
            parts.append(f"{cfg.patient_fraction:.0%} of the patients")
        if cfg.max_minutes:
            parts.append(f"a {cfg.max_minutes:g}-minute budget")
        return f"{self.note}: {', '.join(parts)}."


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(REPORT, "The report's Table 1 and text, sized for a GPU; two phases (frozen backbone, "
           "then fine-tuning), Adam, focal loss 0.25/2, its augmentation", fixed=REPORT_VALUES),
    Preset(CPU_DEMO, "configs/demo.yaml, what `./run.sh` trains, sized for a 2-core CPU",
           path=DEMO_CONFIG),
)}


def default_preset(device=None) -> str:
    """The report's preset on a CUDA machine, the CPU demo elsewhere (CPU, Apple MPS).
    `device`: a torch.device or its type ("cuda", "cpu"); None: this machine's (pick_device)."""
    if device is None:
        from cxr.device import pick_device
        device = pick_device("auto")
    kind = getattr(device, "type", str(device).split(":")[0])
    return REPORT if kind == "cuda" else CPU_DEMO


@dataclass(frozen=True)
class FormValues:
    fields: dict   # FORM_FIELDS -> the value each form widget shows
    extra: str     # the other keys, `key=value` per line (the "More settings" box)


def form_values(preset: Preset, model: str) -> FormValues:
    """What choosing `preset` puts in the launch form; `model` is the form's current model,
    kept unless the preset names one."""
    values = preset.values()
    defaults = {**TrainConfig().to_dict(), "model": model}
    fields = {key: _shown(key, values.get(key, defaults[key]), values.get("model", model))
              for key in FORM_FIELDS}
    extra = "\n".join(line for key, value in values.items() if key not in FORM_FIELDS
                      for line in _lines(key, value))
    return FormValues(fields, extra)


def _shown(key: str, value, model: str):
    """A config value as its form widget shows it (0 / "" for "none")."""
    if key == "image_size" and value is None:
        return model_info(model).input_size
    if key in ("max_steps_per_epoch", "epochs", "batch_size", "image_size"):
        return int(value or 0)
    if key == "max_minutes":
        return float(value or 0.0)
    if key == "weights":
        if isinstance(value, dict):
            raise ValueError(f"a preset's weights must be one file for the form, not {value!r}")
        return value or ""
    return value


def settings_from_form(fields: dict) -> dict:
    """The form's fields (but the model) -> jobs.launch_train's settings: 0 and "" mean none."""
    return {"image_size": int(fields["image_size"]), "epochs": int(fields["epochs"]),
            "batch_size": int(fields["batch_size"]), "loss": fields["loss"],
            "split_strategy": fields["split_strategy"], "pretrained": bool(fields["pretrained"]),
            "weights": str(fields["weights"]).strip() or None, "device": fields["device"],
            "max_steps_per_epoch": int(fields["max_steps_per_epoch"]) or None,
            "max_minutes": float(fields["max_minutes"]) or None}


def _lines(key: str, value) -> list[str]:
    """`key=value` lines that `cxr train --set` reads back to the same value."""
    if isinstance(value, dict):  # model_kwargs: one line per sub-key
        return [f"{key}.{sub}={_text(v)}" for sub, v in value.items()]
    return [f"{key}={_text(value)}"]


def _text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)
