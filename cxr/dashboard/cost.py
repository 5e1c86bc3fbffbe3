"""What a training run will cost, before it is launched: steps per epoch and time per epoch.

    from cxr.dashboard import cost
    cfg = jobs.train_config("data/demo", "fusion", settings, extra)   # the form's TrainConfig
    work = cost.workload(cfg)            # split sizes, steps per epoch, phases and their epochs
    timing = cost.step_timing(cost.MeasureKey.of(cfg))   # measured once, then cached
    est = cost.estimate(work, timing)    # est.epoch_s, est.run_s, est.warnings()

Steps per epoch follow the trainer's own rules: the split the config makes (or loads), the
images of its train split that are on disk, the trainer's sampler (`EpochSampler`, capped by
max_steps_per_epoch) and its phase plan (`phases.plan_for`).

Time comes from a short warm-up on this machine (WARMUP_STEPS): a few training steps (forward,
focal loss, backward, Adam) of the chosen model with random weights (the speed does not depend
on them), at the chosen size, batch and precision, on random tensors; cached per MeasureKey for
the life of the process. On a CPU: CPU_WARMUP_BATCH images a step, the time scaled linearly to
the batch; a CPU's time per image is usually higher at a small batch, so the estimate errs long
rather than short. On a GPU: the full batch (its time per image is far from linear in the
batch), and the untimed steps let cuDNN pick its kernels. From the timed step: the head phase
(backbone frozen) costs a forward pass a step, validation a forward pass per image. Not
counted: loading and augmenting images, which the DataLoader workers overlap with the steps
where there are cores to spare, and other jobs sharing the machine.
"""
from __future__ import annotations

import functools
import json
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from cxr.labels import FINDINGS

CPU_WARMUP_BATCH = 4                         # images per warm-up step on a CPU
WARMUP_STEPS = {"cpu": (1, 1), "accelerator": (2, 3)}  # (untimed, timed) steps
LONG_EPOCH_S = 3600.0                        # say so prominently beyond 1 hour an epoch
LONG_RUN_S = 86400.0                         # or 1 day for the whole run
RECOUNT_S = 300.0  # split sizes are counted again after this long (images still extracting)

_measured: dict = {}                          # MeasureKey -> StepTiming
_measuring = threading.Lock()                 # one warm-up at a time: two would share the cores


@dataclass(frozen=True)
class MeasureKey:
    model: str
    kwargs: str              # the model's kwargs as JSON (its input size included)
    image_size: int
    batch_size: int
    device: str              # "cpu", "cuda:0", "mps"
    precision: object        # cxr.train.precision.Precision (frozen, hashable)

    @classmethod
    def of(cls, cfg) -> "MeasureKey":
        """The key of the steps a TrainConfig will run (its device must be available)."""
        from cxr.device import pick_device
        from cxr.models import model_info
        from cxr.train.precision import training_precision
        device = pick_device(cfg.device)
        kwargs = dict(cfg.model_kwargs)
        kwargs.setdefault("input_size", cfg.image_size or model_info(cfg.model).input_size)
        return cls(cfg.model, json.dumps(kwargs, sort_keys=True), int(kwargs["input_size"]),
                   cfg.batch_size, str(device),
                   training_precision(device, cfg.amp, cfg.channels_last))


@dataclass(frozen=True)
class StepTiming:
    key: MeasureKey
    step_s: float            # one training step of key.batch_size images, everything trainable
    forward_s: float         # its forward pass alone
    measured_batch: int      # images per measured step
    warmup_steps: int
    timed_steps: int

    def how(self) -> str:
        """How it was measured, in words."""
        k = self.key
        text = (f"{self.warmup_steps + self.timed_steps} training steps of `{k.model}` at "
                f"{k.image_size} px, {self.measured_batch} images a step, on {k.device} "
                f"({k.precision.name}), on random tensors; {self.warmup_steps} to warm up, "
                f"{self.timed_steps} timed")
        if self.measured_batch != k.batch_size:
            text += (f"; scaled linearly to batch {k.batch_size} "
                     f"(x{k.batch_size / self.measured_batch:g})")
        return text


def cached_timing(key: MeasureKey) -> StepTiming | None:
    """The timing measured earlier in this process, or None (nothing runs)."""
    return _measured.get(key)


def step_timing(key: MeasureKey) -> StepTiming:
    """The cached timing, or measure it now (seconds on a CPU, once per key)."""
    with _measuring:
        if key not in _measured:
            _measured[key] = measure_step_seconds(key)
        return _measured[key]


def measure_step_seconds(key: MeasureKey) -> StepTiming:
    """Time training steps of key's model on random tensors (uncached; see the module doc)."""
    from cxr.losses import make_loss
    from cxr.models import create_model

    device = torch.device(key.device)
    untimed, timed = WARMUP_STEPS["cpu" if device.type == "cpu" else "accelerator"]
    batch = min(key.batch_size, CPU_WARMUP_BATCH) if device.type == "cpu" else key.batch_size
    fmt = key.precision.memory_format
    # the server's RNG stays as it was: the model's init and the dropout draw from a fork
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = create_model(key.model, pretrained=False, **json.loads(key.kwargs))
        model.to(device, memory_format=fmt).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
        loss_fn = make_loss("focal")
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 3, key.image_size, key.image_size, generator=gen)
        y = (torch.rand(batch, len(FINDINGS), generator=gen) < 0.2).float()
        x, y = x.to(device).contiguous(memory_format=fmt), y.to(device)
        step_s = forward_s = 0.0
        try:
            for i in range(untimed + timed):
                start = _now(device)
                with key.precision.autocast():
                    logits = model(x)
                forward_done = _now(device)
                loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if i >= untimed:
                    step_s += _now(device) - start
                    forward_s += forward_done - start
        except torch.cuda.OutOfMemoryError:
            raise ValueError(f"{key.model} at {key.image_size} px does not fit in the memory of "
                             f"{key.device} at batch {batch}: lower the batch size or the image "
                             "size") from None
        finally:
            del model, optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()
    scale = key.batch_size / batch
    return StepTiming(key, step_s / timed * scale, forward_s / timed * scale, batch, untimed,
                      timed)


def _now(device: torch.device) -> float:
    """Wall time after the device finished its queued work (GPUs run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    return time.perf_counter()


# -- the run's size ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PhaseWork:
    name: str                # head | finetune | full (cxr/train/phases.py)
    frozen_backbone: bool
    max_epochs: int          # at most (early stopping may end it sooner)


@dataclass(frozen=True)
class Workload:
    train_images: int        # train split images on disk (what the trainer reads)
    val_images: int
    images_missing: int      # train + val images of the split that are not on disk
    batch_size: int
    steps_per_epoch: int
    capped: bool             # max_steps_per_epoch cut the epoch short
    phases: tuple[PhaseWork, ...]
    val_every: int
    max_minutes: float | None

    @property
    def max_epochs(self) -> int:
        return sum(p.max_epochs for p in self.phases)


def steps_per_epoch(train_images: int, batch_size: int, max_steps: int | None = None) -> int:
    """The trainer's count (one process): ceil(images / batch), at most max_steps."""
    from cxr.train.data import EpochSampler
    return EpochSampler(train_images, batch_size, 0, 0, 1, max_steps).batches()


def workload(cfg) -> Workload:
    """The run `cfg` describes: its split sizes (the dataset is read, then cached), steps per
    epoch and phases. Raises FileNotFoundError / ValueError naming a missing dataset or split."""
    from cxr.models import model_info
    from cxr.train import phases as ph

    train, val, missing = split_sizes(cfg)
    uses_pretrained = model_info(cfg.model).pretrained and (
        cfg.pretrained or cfg.weights is not None)
    plan, _ = ph.plan_for(cfg, cfg.model, uses_pretrained)
    used: list[int] = []
    for index in range(len(plan)):
        used.append(ph.max_epochs(cfg, plan, index, used))
    steps = steps_per_epoch(train, cfg.batch_size, cfg.max_steps_per_epoch)
    return Workload(train, val, missing, cfg.batch_size, steps,
                    steps < steps_per_epoch(train, cfg.batch_size),
                    tuple(PhaseWork(p.name, p.freeze_backbone, n) for p, n in zip(plan, used)),
                    cfg.val_every, cfg.max_minutes)


def split_sizes(cfg) -> tuple[int, int, int]:
    """(train, val, missing) image counts of the config's split on its dataset; cached per
    metadata file version and split settings, and counted again after RECOUNT_S."""
    from cxr.data.layout import DatasetFiles
    files = DatasetFiles.locate(cfg.data_dir)
    split = Path(cfg.split_path) if cfg.split_path else None
    return _split_sizes(files, _version(files.data_entry), int(time.monotonic() // RECOUNT_S),
                        split, _version(split), cfg.split_strategy, cfg.split_seed,
                        tuple(cfg.split_fractions), cfg.patient_fraction)


def _version(path) -> int | None:
    """A file's mtime: the cache key changes when it does."""
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _split_sizes(files, entry_version, period, split_path, split_version, strategy,
                 seed, fractions, patient_fraction) -> tuple[int, int, int]:
    from cxr.data.metadata import read_data_entry
    from cxr.data.splits import attach_split, load_split
    from cxr.train.data import made_split

    with warnings.catch_warnings():  # images not on disk: counted below, not warned about
        warnings.simplefilter("ignore")
        table = read_data_entry(files.data_entry, images_root=files.images_root, missing="keep")
    if split_path is not None:
        frame, _ = load_split(split_path)
    else:
        cfg = SimpleNamespace(split_strategy=strategy, split_seed=seed, split_fractions=fractions,
                              patient_fraction=patient_fraction)
        frame = made_split(cfg, files, table)
    joined = attach_split(table, frame)
    on_disk = joined["path"].astype(str) != ""
    counts = {name: int((on_disk & (joined["split"] == name)).sum()) for name in ("train", "val")}
    if counts["train"] == 0:
        raise ValueError(f"the train split has no images on disk under {files.root}: check the "
                         "dataset folder and its images")
    missing = int((~on_disk & joined["split"].isin(["train", "val"])).sum())
    return counts["train"], counts["val"], missing


# -- the estimate -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    epoch_s: dict            # phase name -> seconds an epoch (steps + its share of validation)
    run_s: float             # every phase at its most epochs
    budget_s: float | None   # max_minutes: the trainer stops there

    @property
    def longest_epoch_s(self) -> float:
        return max(self.epoch_s.values())

    @property
    def wall_s(self) -> float:
        """The run's length at most: its epochs, or the time budget if that is shorter."""
        return min(self.run_s, self.budget_s) if self.budget_s else self.run_s

    def warnings(self) -> list[str]:
        """What makes this run long (empty: it is not)."""
        found = []
        if self.longest_epoch_s > LONG_EPOCH_S:
            found.append(f"about {duration(self.longest_epoch_s)} per epoch "
                         f"(over {LONG_EPOCH_S / 3600:g} hour)")
        if self.wall_s > LONG_RUN_S:
            found.append(f"about {self.wall_s / 86400:.1f} days for the whole run (over 1 day)")
        return found


def estimate(work: Workload, timing: StepTiming) -> Estimate:
    """Time per epoch of each phase and of the whole run, from the measured step."""
    per_image = {True: timing.forward_s / work.batch_size,   # backbone frozen: a forward pass
                 False: timing.step_s / work.batch_size}
    images = min(work.train_images, work.steps_per_epoch * work.batch_size)
    val_s = work.val_images * timing.forward_s / work.batch_size / work.val_every
    epoch_s = {p.name: images * per_image[p.frozen_backbone] + val_s for p in work.phases}
    run_s = sum(epoch_s[p.name] * p.max_epochs for p in work.phases)
    budget_s = work.max_minutes * 60 if work.max_minutes else None
    return Estimate(epoch_s, run_s, budget_s)


def describe_steps(work: Workload) -> str:
    """Steps per epoch and where the number comes from, in words."""
    text = (f"**{work.steps_per_epoch:,} steps per epoch**: {work.train_images:,} train images "
            f"at batch {work.batch_size}")
    if work.capped:
        text += f", capped by max steps per epoch ({work.steps_per_epoch:,})"
    text += f"; {work.val_images:,} validation images"
    epochs = " + ".join(f"{p.max_epochs} {p.name}" for p in work.phases)
    text += f". At most {work.max_epochs} epochs ({epochs})."
    if work.images_missing:
        text += f" {work.images_missing:,} images of the split are not on disk and are left out."
    return text


def describe_time(work: Workload | None, timing: StepTiming, est: Estimate | None) -> str:
    """The estimate in words (per step only when the dataset is unknown)."""
    step = f"{duration(timing.step_s)} per step"
    if work is None or est is None:
        return f"**Estimated {step}** on {timing.key.device}; give a dataset folder for the epoch."
    phases = ", ".join(f"{duration(s)} ({name})" for name, s in est.epoch_s.items())
    text = (f"**Estimated time per epoch on {timing.key.device}: {phases}**; {step}. "
            f"Whole run: at most about {duration(est.run_s)}")
    if est.budget_s and est.budget_s < est.run_s:
        text += f", but its time budget stops it after {duration(est.budget_s)}"
    return text + "."


def duration(seconds: float) -> str:
    """'850 ms', '42s', '3m 05s', '26h 40m'."""
    from cxr.dashboard.runs import format_eta
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else format_eta(seconds)
