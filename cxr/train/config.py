"""TrainConfig: every setting of a training run in one dataclass, with the report's defaults.

Read from YAML (`--config FILE.yaml`), then `--set key=value` overrides, typed by the field
(`--set image_size=128 --set lr_head=3e-4 --set pretrained=false --set weights=none`,
`--set model_kwargs.drop_rate=0.3`, `--set split_fractions=[0.8,0.1,0.1]`). Unknown keys are an
error naming the key. The resolved config is written to RUN_DIR/config.yaml and into every
checkpoint's meta, so a run can be repeated from either.

Defaults are the report's Table 1: Adam, batch 32, 25 epochs, lr 1e-3 (head phase) then 1e-5
(fine-tuning), focal loss alpha 0.25 gamma 2, early stopping on validation macro AUC. What the
report leaves open is chosen here and documented next to the field.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cxr.device import DEVICES

SCHEDULES = ("auto", "two_phase", "single_phase")
EPOCH_BUDGETS = ("per_phase", "total")
SPLIT_STRATEGIES = ("patient", "official")


@dataclass
class TrainConfig:
    # -- data ---------------------------------------------------------------------------
    data_dir: str = ""                       # dataset folder in the ChestX-ray14 layout
    split_strategy: str = "patient"          # "patient" (iterative stratification) | "official"
    split_seed: int = 0
    split_fractions: list = field(default_factory=lambda: [0.7, 0.1, 0.2])  # train, val, test
    patient_fraction: float = 1.0            # the report trained on a fraction of the patients
    split_path: str | None = None            # an existing split CSV (with its JSON sidecar)
    image_size: int | None = None            # None: the model's own input size
    # augmentation (training only), the report's Keras layers (cxr/data/transforms.py); 0 = off
    hflip: float = 0.5                       # probability of a horizontal flip
    rotation: float = 0.1                    # Keras factor: fraction of a full turn (0.1 = 36 deg)
    zoom: float = 0.1                        # scale in [1 - z, 1 + z]
    brightness: float = 0.1                  # additive, uniform in [-b, b]
    # -- model --------------------------------------------------------------------------
    model: str = "fusion"
    model_kwargs: dict = field(default_factory=dict)
    pretrained: bool = True                  # ImageNet weights via timm (needs the hub or cache)
    weights: str | dict | None = None        # a local weights file instead of the hub (fusion:
    #                                          {densenet121: PATH, efficientnet_b3: PATH})
    # -- loss ---------------------------------------------------------------------------
    loss: str = "focal"                      # focal | bce | weighted_bce
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # -- optimisation -------------------------------------------------------------------
    batch_size: int = 32                     # global batch (split over DDP processes)
    epochs: int = 25
    epochs_budget: str = "per_phase"         # per_phase: each phase up to `epochs`;
    #                                          total: both phases share `epochs`
    lr_head: float = 1e-3                    # phase 1 (and a single-phase run)
    lr_finetune: float = 1e-5                # phase 2, everything unfrozen, fresh Adam
    weight_decay: float = 0.0                # Adam's L2 (the report uses none)
    min_lr: float = 1e-5                     # ReduceLROnPlateau floor
    plateau_patience: int = 2                # epochs without val AUC gain before lr *= factor
    plateau_factor: float = 0.5
    patience: int = 5                        # early stopping: epochs without val AUC gain
    schedule: str = "auto"                   # auto | two_phase | single_phase (see loop.py)
    # -- runtime ------------------------------------------------------------------------
    workers: int | None = None               # DataLoader workers; None: from the CPU count
    device: str = "auto"                     # auto: cuda, else mps, else cpu
    amp: bool = True                         # bf16 autocast on CUDA (ignored elsewhere)
    channels_last: bool = True               # on CUDA
    mc_passes: int = 25                      # MC-dropout passes for evaluation / prediction
    seed: int = 0
    max_steps_per_epoch: int | None = None   # cap (tests, the demo); None: the whole train split
    val_every: int = 1                       # validate every N epochs (and always the last)
    max_minutes: float | None = None         # wall-clock budget; stops before an epoch that
    #                                          would not fit and finishes the run normally

    def __post_init__(self):
        check(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"config {name}={value!r}: expected one of {', '.join(allowed)}")


def check(cfg: TrainConfig) -> None:
    """Values the loop would otherwise trip over much later; each error names the key."""
    _choice("schedule", cfg.schedule, SCHEDULES)
    _choice("epochs_budget", cfg.epochs_budget, EPOCH_BUDGETS)
    _choice("device", cfg.device, DEVICES)
    _choice("split_strategy", cfg.split_strategy, SPLIT_STRATEGIES)
    for name in ("batch_size", "epochs", "val_every", "patience", "plateau_patience"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"config {name}={getattr(cfg, name)!r}: must be at least 1")
    for name in ("lr_head", "lr_finetune", "min_lr", "plateau_factor"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"config {name}={value!r}: must be a positive number")
    if not 0 < cfg.plateau_factor < 1:
        raise ValueError(f"config plateau_factor={cfg.plateau_factor!r}: must be in (0, 1)")
    if cfg.image_size is not None and cfg.image_size < 16:
        raise ValueError(f"config image_size={cfg.image_size!r}: must be at least 16 pixels")
    if cfg.max_steps_per_epoch is not None and cfg.max_steps_per_epoch < 1:
        raise ValueError(f"config max_steps_per_epoch={cfg.max_steps_per_epoch!r}: must be >= 1")
    if cfg.workers is not None and cfg.workers < 0:
        raise ValueError(f"config workers={cfg.workers!r}: must be >= 0")
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:
        raise ValueError(f"config max_minutes={cfg.max_minutes!r}: must be positive")
    if len(cfg.split_fractions) != 3:
        raise ValueError(f"config split_fractions={cfg.split_fractions!r}: need train, val, test")
    if not isinstance(cfg.model_kwargs, dict):
        raise ValueError(f"config model_kwargs={cfg.model_kwargs!r}: must be a mapping")


# -- typing of values from YAML and --set ------------------------------------------------
_HINTS: dict | None = None


def field_types() -> dict:
    global _HINTS
    if _HINTS is None:
        _HINTS = typing.get_type_hints(TrainConfig)
    return _HINTS


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce_one(name: str, kind, value):
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"config {name}={value!r}: expected true or false")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"config {name}={value!r}: expected an integer")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config {name}={value!r}: expected an integer") from None
        if not as_float.is_integer():
            raise ValueError(f"config {name}={value!r}: expected an integer")
        return int(as_float)
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config {name}={value!r}: expected a number") from None
    if kind is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"config {name}={value!r}: expected a string")
        return str(value)
    if kind is dict:
        value = yaml.safe_load(value) if isinstance(value, str) else value
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"config {name}={value!r}: expected a mapping like {{key: value}}")
        return dict(value)
    if kind is list:
        value = yaml.safe_load(value) if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config {name}={value!r}: expected a list like [0.7, 0.1, 0.2]")
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"config {name}={value!r}: expected a list of numbers") from None
    raise TypeError(f"config {name}: unsupported field type {kind}")


def coerce(name: str, value):
    """`value` (from YAML or a --set string) as the type of field `name`."""
    hints = field_types()
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
        raise ValueError(f"unknown config key {name!r}; known keys: {known}")
    kind = hints[name]
    args = typing.get_args(kind)
    optional = isinstance(kind, types.UnionType) and type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in
                             ("none", "null", "~", "")):
            return None
        args = tuple(a for a in args if a is not type(None))
        kind = args[0]
    if dict in args and kind is not dict:  # `weights`: a path, or a mapping for fusion
        parsed = yaml.safe_load(value) if isinstance(value, str) else value
        if isinstance(parsed, dict):
            return dict(parsed)
    return _coerce_one(name, typing.get_origin(kind) or kind, value)


def parse_override(text: str) -> tuple[str, object]:
    """'lr_head=3e-4' -> ('lr_head', 0.0003); 'model_kwargs.drop_rate=0.3' -> a kwargs entry."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected key=value")
    key, value = (part.strip() for part in text.split("=", 1))
    return key, value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    values = dict(values)
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("model_kwargs."):
            sub = key.split(".", 1)[1]
            values["model_kwargs"] = {**values.get("model_kwargs", {}), sub: yaml.safe_load(value)}
        else:
            values[key] = value
    return values


def from_dict(values: dict) -> TrainConfig:
    return TrainConfig(**{k: coerce(k, v) for k, v in values.items()})


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected a mapping of key: value")
    for key in values:
        if key not in field_types():
            raise ValueError(f"config file {path}: unknown key {key!r}")
    return values


def load_config(path: str | Path | None = None, overrides: list[str] = (),
                **values) -> TrainConfig:
    """YAML file (optional) < keyword values < --set overrides."""
    merged = read_yaml(path) if path else {}
    merged.update({k: v for k, v in values.items() if v is not None})
    return from_dict(apply_overrides(merged, list(overrides)))


def dump_yaml(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
