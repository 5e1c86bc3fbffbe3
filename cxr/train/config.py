"""TrainConfig: every setting of a training run in one pydantic model, with the report's defaults.

Read from YAML (`--config FILE.yaml`), then `--set key=value` overrides. pydantic types each
value by its field and checks its range or choices (`--set image_size=128 --set lr_head=3e-4
--set pretrained=false --set weights=none`, `--set model_kwargs.drop_rate=0.3`,
`--set split_fractions=[0.8,0.1,0.1]`); `model` and `loss` must be registered names
(cxr.models.MODELS, cxr.losses.LOSSES). Every error names the key, the value and what was
expected, e.g. `config epochs='2.5': expected a valid integer, unable to parse string as an
integer`. The resolved config (`cfg.to_dict()`, JSON-safe) is written to RUN_DIR/config.yaml and
into every checkpoint's meta, so a run can be repeated from either.

Defaults follow the report: its Table 1 (Adam, batch 32, 25 epochs, lr 1e-3, minimum lr 1e-5,
focal loss alpha 0.25 gamma 2) and its text (fine-tuning at 1e-5, early stopping on validation
AUC). What the report leaves open is chosen here, documented next to the field and marked
"Inferred" or "Assumed" in MODEL_CARD.md (25 epochs per phase, the patiences, the fill mode).
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cxr.data.augment import FILL_MODES, AugmentConfig
from cxr.device import DEVICES
from cxr.uncertainty import DEFAULT_RULE, UNCERTAINTY_RULES

AtLeast1 = Annotated[int, Field(ge=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
NONE_WORDS = ("none", "null", "~", "")  # `--set KEY=none` clears an optional field


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    # -- data ---------------------------------------------------------------------------
    data_dir: str = ""                       # dataset folder in the ChestX-ray14 layout
    split_strategy: Literal["patient", "official"] = "patient"  # patient: iterative stratification
    split_seed: int = 0
    split_fractions: list[NonNegative] = Field(  # train, val, test
        default_factory=lambda: [0.7, 0.1, 0.2], min_length=3, max_length=3)
    patient_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0  # the report used a fraction
    split_path: str | None = None            # an existing split CSV (with its JSON sidecar)
    image_size: Annotated[int, Field(ge=16)] | None = None  # None: the model's own input size
    # augmentation (training only), the report's Keras layers (cxr/data/transforms.py); 0 = off
    hflip: Probability = AugmentConfig.hflip          # probability of a horizontal flip
    rotation: NonNegative = AugmentConfig.rotation    # Keras factor: fraction of a full turn
    zoom: Annotated[float, Field(ge=0, lt=1)] = AugmentConfig.zoom  # scale in [1 - z, 1 + z]
    brightness: NonNegative = AugmentConfig.brightness  # additive, uniform in [-b, b]
    # what rotation and zoom uncover: reflect (Keras' default, the report's pipeline) or black
    fill_mode: Literal[FILL_MODES] = AugmentConfig.fill_mode
    # -- model --------------------------------------------------------------------------
    model: str = "fusion"                    # a cxr.models.MODELS name
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrained: bool = True                  # ImageNet weights via timm (needs the hub or cache)
    weights: str | dict[str, str] | None = None  # a local weights file instead of the hub
    #                                          (fusion: {densenet121: PATH, efficientnet_b3: PATH})
    # -- loss ---------------------------------------------------------------------------
    loss: str = "focal"                      # a cxr.losses.LOSSES name: focal | bce | weighted_bce
    focal_alpha: Probability = 0.25
    focal_gamma: NonNegative = 2.0
    # constant: the report's printed formula, every term times alpha; balanced: alpha on
    # positives, 1 - alpha on negatives (torchvision's alpha_t, the report's words). constant is
    # the default because it trained better on the demo (two seeds, MODEL_CARD.md)
    focal_alpha_mode: Literal["balanced", "constant"] = "constant"
    # -- optimisation -------------------------------------------------------------------
    batch_size: AtLeast1 = 32                # global batch (split over DDP processes)
    epochs: AtLeast1 = 25
    epochs_budget: Literal["per_phase", "total"] = "per_phase"  # per_phase: each phase up to
    #                                          `epochs`; total: both phases share `epochs`
    lr_head: Positive = 1e-3                 # phase 1 (and a single-phase run)
    lr_finetune: Positive = 1e-5             # phase 2, everything unfrozen, fresh Adam
    weight_decay: NonNegative = 0.0          # Adam's L2 (the report uses none)
    min_lr: Positive = 1e-5                  # ReduceLROnPlateau floor
    plateau_patience: AtLeast1 = 2           # epochs without val AUC gain before lr *= factor
    plateau_factor: Annotated[float, Field(gt=0, lt=1)] = 0.5
    patience: AtLeast1 = 5                   # early stopping: epochs without val AUC gain
    schedule: Literal["auto", "two_phase", "single_phase"] = "auto"  # see phases.py
    # BatchNorm while fine-tuning (phase 2): train = batch statistics, running averages
    # updated; frozen = eval mode, as the Keras transfer-learning guide advises. The report
    # does not say which it used (MODEL_CARD.md, "The report vs this project").
    finetune_batchnorm: Literal["train", "frozen"] = "train"
    # -- runtime ------------------------------------------------------------------------
    workers: Annotated[int, Field(ge=0)] | None = None  # DataLoader workers; None: from CPUs
    # Where the training augmentation runs. on: each batch of the uint8 image cache goes to the
    # device and is augmented there in one go (cxr/data/batch_transforms.py: the same
    # parameters and steps as the CPU path); needs the cache (`cxr prepare`). off: per image in
    # the DataLoader workers. auto: on for CUDA when the cache exists, off otherwise.
    gpu_augment: Literal["auto", "on", "off"] = "auto"
    device: Literal[DEVICES] = "auto"  # cxr/device.py: auto = cuda, else mps, else cpu
    amp: bool = True                         # bf16 autocast on CUDA and on CPUs with native
    channels_last: bool = True               # bf16; fp32 elsewhere (cxr/train/precision.py)
    mc_passes: AtLeast1 = 25                 # MC-dropout passes for evaluation / prediction
    # When an image counts as uncertain (cxr/uncertainty.py): "mean", the report's rule (the
    # mean MC-dropout std over the 14 findings > 0.1), or "any" (some finding's std > 0.1).
    # Saved in every checkpoint; `cxr predict` / `cxr evaluate --uncertainty-rule` override it.
    uncertainty_rule: Literal[UNCERTAINTY_RULES] = DEFAULT_RULE
    seed: int = 0
    max_steps_per_epoch: AtLeast1 | None = None  # cap (tests, the demo); None: whole split
    val_every: AtLeast1 = 1                  # validate every N epochs (and always the last)
    max_minutes: Positive | None = None      # wall-clock budget; stops before an epoch that
    #                                          would not fit and finishes the run normally

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as exc:  # one line per key instead of pydantic's report
            raise ValueError(describe(exc, values)) from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value, info):
        """`--set` gives strings: `none` clears an optional field, a list or mapping is YAML."""
        kinds = field_kinds(cls.model_fields[info.field_name].annotation)
        if isinstance(value, str):
            if type(None) in kinds and value.strip().lower() in NONE_WORDS:
                return None
            if kinds & {list, dict}:
                parsed = yaml_value(value)
                value = parsed if isinstance(parsed, (list, dict)) or str not in kinds else value
        if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
            raise ValueError("expected a number, not true/false")
        return {} if value is None and kinds == {dict} else value

    @field_validator("model", "loss")
    @classmethod
    def _registered(cls, name: str, info) -> str:
        if info.field_name == "model":
            from cxr.models import MODELS as known  # the registry alone: no torch or timm import
        else:
            from cxr.losses import LOSSES as known
        if name not in known:
            raise ValueError(f"unknown {info.field_name}; expected one of {', '.join(known)}")
        return name


def field_kinds(annotation) -> set:
    """int | None -> {int, NoneType}; list[float] -> {list}; constraints (Annotated) dropped."""
    kinds = set()
    for kind in typing.get_args(annotation) if typing.get_origin(annotation) in (
            typing.Union, types.UnionType) else (annotation,):
        if typing.get_origin(kind) is Annotated:
            kind = typing.get_args(kind)[0]
        kinds.add(typing.get_origin(kind) or kind)
    return kinds


def yaml_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def unknown_key(key: str) -> str:
    close = difflib.get_close_matches(key, TrainConfig.model_fields, n=1)
    hint = f"did you mean {close[0]!r}?" if close else \
        f"known keys: {', '.join(TrainConfig.model_fields)}"
    return f"unknown config key {key!r}; {hint}"


def describe(exc: ValidationError, values: dict) -> str:
    """pydantic's errors as `config KEY=VALUE: expected ...`, one line per key."""
    found: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        key = str(error["loc"][0])
        if error["type"] == "extra_forbidden":
            found[key] = [unknown_key(key)]
            continue
        text = error["msg"].removeprefix("Value error, ")
        text = re.sub(r"^(Input|List) should (be|have) ", "expected ", text)
        items = [str(part) for part in error["loc"][1:] if isinstance(part, int)]
        text += f" (item {items[0]})" if items else ""
        found.setdefault(key, [f"config {key}={values.get(key)!r}:"]).append(text)
    return "\n".join(parts[0] if len(parts) == 1 else f"{parts[0]} {'; or '.join(parts[1:])}"
                     for parts in found.values())


def parse_override(text: str) -> tuple[str, str]:
    """'lr_head=3e-4' -> ('lr_head', '3e-4'): the key and the value's text (TrainConfig types
    it); 'model_kwargs.drop_rate=0.3' -> ('model_kwargs.drop_rate', '0.3')."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected key=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    values = dict(values)
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("model_kwargs."):
            sub = key.split(".", 1)[1]
            try:
                parsed = yaml_value(value)
            except ValueError as exc:
                raise ValueError(f"config {key}={value!r}: {exc}") from None
            values["model_kwargs"] = {**(values.get("model_kwargs") or {}), sub: parsed}
        else:
            values[key] = value
    return values


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
        if key not in TrainConfig.model_fields:
            raise ValueError(f"config file {path}: {unknown_key(str(key))}")
    return values


# What a run's config.yaml written before a setting existed was trained with: resuming it must
# not switch to today's default mid-run.
RUN_DEFAULTS_BEFORE_FIELD = {"focal_alpha_mode": "balanced", "fill_mode": "black"}
# The baselines' second head dropout used `drop_rate` until `hidden_drop_rate` (0.5) split it
# off, in the same change that added `fill_mode`: a config without fill_mode predates both.
HIDDEN_DROP_BEFORE_FIELD = ("densenet121", "efficientnet_b0")


def read_run_config(path: str | Path) -> dict:
    """A run directory's config.yaml, completed with RUN_DEFAULTS_BEFORE_FIELD for old runs
    (and, for a baseline written before `fill_mode`, its model_kwargs' hidden_drop_rate)."""
    values = read_yaml(path)
    if "fill_mode" not in values and values.get("model") in HIDDEN_DROP_BEFORE_FIELD:
        kwargs = dict(values.get("model_kwargs") or {})
        kwargs.setdefault("hidden_drop_rate", kwargs.get("drop_rate", 0.4))
        values["model_kwargs"] = kwargs
    return {**RUN_DEFAULTS_BEFORE_FIELD, **values}


def load_config(path: str | Path | None = None, overrides: list[str] = (),
                **values) -> TrainConfig:
    """YAML file (optional) < keyword values < --set overrides."""
    merged = read_yaml(path) if path else {}
    merged.update({k: v for k, v in values.items() if v is not None})
    return TrainConfig(**apply_overrides(merged, list(overrides)))


def dump_yaml(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
