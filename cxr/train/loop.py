"""The training loop behind `cxr train`: phases, epochs, validation, checkpoints, resume, stop.

    from cxr.train import TrainConfig, train
    cfg = TrainConfig(data_dir="data/demo", model="simple_cnn", image_size=128, epochs=3,
                      pretrained=False)
    rc = train(cfg, "checkpoints/try")              # 0 finished or stopped, 1 failed
    rc = train(None, "checkpoints/try", resume=True)  # continue from last.pt (config.yaml)

One epoch: train steps (DistributedSampler order, seeded by seed + epoch), then validation
on every val image exactly once (sharded across ranks, gathered in dataset order), then
ReduceLROnPlateau / early stopping on val macro AUC, a history.csv row, best.pt when the
run's val macro AUC improved, and last.pt (model + optimizer + scheduler + loop counters +
per-rank torch RNG states). Phases: see phases.py.

Interruptions:
- stop request (RUN_DIR/STOP appears, or SIGTERM/SIGINT): the current step finishes, last.pt
  is saved mid-epoch (the epoch resumes at the next step), status `stopped`, return 0. The
  STOP file is consumed.
- crash / kill -9: `--resume` continues from the last.pt of the last finished epoch (or the
  last stop); history rows past it are dropped. Data order, augmentation and dropout RNG are
  restored, so on CPU a resumed run reproduces the uninterrupted one.
- non-finite training loss: nothing is saved over the last good checkpoints, status `failed`
  with the phase, epoch and step in the message, return 1.
- time budget (`max_minutes`): no epoch is started that the last epoch's duration says would
  not fit, and a running epoch is cut short at the budget, validated, and the run `finished`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxr.checkpoint import checkpoint_model_name, load_checkpoint, save_checkpoint, unwrap
from cxr.jsonsafe import finite_or_none, json_safe
from cxr.labels import FINDINGS
from cxr.rundir import STOP, RunDir
from cxr.train import distributed as ddp
from cxr.train import phases as ph
from cxr.train.config import TrainConfig, dump_yaml, read_run_config
from cxr.train.data import (EpochDataset, EpochSampler, default_workers, device_batch,
                            find_cache, make_loader, read_split, split_tables, targets_of,
                            use_gpu_augment, write_split)
from cxr.train.precision import training_precision
from cxr.train.progress import History, Progress, close_logger, progress_bar, setup_logger
from cxr.uncertainty import to_proba


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class LoopState:
    """Counters saved in last.pt; enough to continue exactly where the run was."""
    phase_index: int = 0
    phase_epoch: int = 0          # finished epochs in this phase
    epoch: int = 0                # finished epochs in the run (history's `epoch` is 1-based)
    step: int = 0                 # finished steps of the epoch in progress
    global_step: int = 0
    loss_sum: float = 0.0         # this rank's train loss sum / count in the epoch in progress
    seen: int = 0
    epoch_seconds: float = 0.0    # train time spent in the epoch in progress
    phase_best: float | None = None
    bad_epochs: int = 0
    best: float | None = None     # best val macro AUC of the run: best.pt
    best_epoch: int | None = None
    phase_epochs_used: list = field(default_factory=list)
    last_epoch_seconds: float | None = None
    elapsed: float = 0.0
    finished: bool = False


class StopRequest:
    """SIGTERM / SIGINT (first one) or a STOP file in the run dir; checked once per step."""

    def __init__(self, run_dir: Path, is_main: bool):
        self.path, self.is_main, self.flag, self.reason = RunDir(run_dir).stop, is_main, False, ""
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.flag, self.reason = True, signal.Signals(signum).name
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))  # a second one is not polite

    def requested(self) -> bool:
        if not self.flag and self.is_main and self.path.exists():
            self.flag, self.reason = True, f"{STOP} file"
        return self.flag

    def consume(self) -> None:
        if self.is_main and self.path.exists():
            self.path.unlink()

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# -- RNG state ---------------------------------------------------------------------------
def rng_state() -> dict:
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": list(random.getstate()[1])}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- run directory -----------------------------------------------------------------------
def check_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """A second run into a used directory is refused (it would mix two runs' files)."""
    run = RunDir(run_dir)
    if resume:
        if not run.config.is_file():
            raise FileNotFoundError(f"cannot resume {run_dir}: it has no config.yaml "
                                    "(not a run directory, or the run never started)")
        return
    used = run.used()
    if used and not force and not _failed_before_training(run_dir):
        raise ValueError(f"{run_dir} already holds a run ({', '.join(used)}); use --resume "
                         f"{run_dir} to continue it, --force to start over (deletes its "
                         "checkpoints, history and eval/), or another --out")


def _failed_before_training(run_dir: Path) -> bool:
    """A run that failed before its first epoch (bad option, weights unreachable) left only
    its config and log: starting again in that directory loses nothing."""
    run = RunDir(run_dir)
    return run.status() == "failed" and not any(
        p.exists() for p in (run.last, run.best, run.history))


def train(cfg: TrainConfig | None, run_dir, resume: bool = False, force: bool = False) -> int:
    """Run (or resume) a training run into `run_dir`; returns the process exit code."""
    run_dir, run = Path(run_dir), RunDir(run_dir)
    if resume and cfg is None:
        check_run_dir(run_dir, resume, force)
        cfg = TrainConfig(**read_run_config(run.config))
    if cfg is None:
        raise ValueError("train() needs a TrainConfig unless resume=True")
    info = ddp.setup(cfg.device)
    try:
        check_run_dir(run_dir, resume, force)  # every rank, before rank 0 writes anything
        ddp.barrier(info)
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not resume and (force or _failed_before_training(run_dir)):
                run.clear()  # eval/ too: it scored the checkpoints deleted here
            if not resume:
                dump_yaml(cfg, run.config)
        ddp.barrier(info)
        return Trainer(cfg, run_dir, info, resume).run()
    finally:
        ddp.teardown(info)


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, info: ddp.DistInfo, resume: bool):
        self.cfg, self.run_dir, self.info, self.resume = cfg, run_dir, info, resume
        self.rundir = RunDir(run_dir)
        self.log_ = setup_logger(run_dir, info.is_main)
        self.progress = Progress(run_dir, info.is_main, model=cfg.model, run_dir=str(run_dir),
                                 world_size=info.world_size, device=str(info.device))
        self.history = History(run_dir, info.is_main)
        self.precision = training_precision(info.device, cfg.amp, cfg.channels_last)
        self.state = LoopState()
        self.resume_ckpt: dict | None = None
        self.last_metrics: dict | None = None

    def log(self, message: str) -> None:
        self.log_.info(message)

    # -- setup -----------------------------------------------------------------------------
    def build(self) -> None:
        cfg, info = self.cfg, self.info
        seed_everything(cfg.seed)  # same initial weights on every rank (DDP checks it anyway)
        self.model = self.build_model()
        self.image_size = int(self.model.preprocess["input_size"])
        self.phases, notice = ph.plan(cfg, self.model)
        if notice:
            self.log(f"notice: {notice}")
        self.build_data()
        self.load_resume_state()
        if self.resume_ckpt is None:  # dropout differs per rank; rank 0 equals a 1-process run
            seed_everything(cfg.seed + 1 + info.rank)
        if info.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model.to(info.device)
        if self.precision.channels_last:
            self.model.to(memory_format=torch.channels_last)
        unused = cfg.amp and not self.precision.bf16 and info.device.type == "cpu"
        self.log(f"precision: {self.precision.name}" + (
            " (amp is on, but this CPU has no native bf16)" if unused else ""))

    def build_model(self):
        from cxr.models import create_model, model_info
        cfg = self.cfg
        kwargs = dict(cfg.model_kwargs)
        if cfg.image_size is not None:
            kwargs.setdefault("input_size", cfg.image_size)
        pretrained = cfg.pretrained
        if pretrained and cfg.weights is None and not model_info(cfg.model).pretrained:
            self.log(f"notice: {cfg.model} has no pretrained weights (pretrained=true is moot); "
                     "it starts from random init")
            pretrained = False
        try:
            return create_model(cfg.model, pretrained=pretrained, weights=cfg.weights, **kwargs)
        except (OSError, RuntimeError) as exc:  # hub unreachable, weights file unreadable, ...
            raise ValueError(
                f"cannot build {cfg.model} (pretrained={cfg.pretrained}, weights={cfg.weights}): "
                f"{type(exc).__name__}: {exc}. Offline? Train from random init with "
                "--set pretrained=false, or give a local weights file with --set weights=PATH"
            ) from exc

    def build_data(self) -> None:
        from cxr.data.batch_transforms import BatchTransform
        from cxr.data.dataset import CachedUint8Dataset, CXRDataset
        from cxr.data.layout import DatasetFiles, data_version
        from cxr.data.metadata import read_data_entry
        from cxr.data.transforms import AugmentConfig, build_transform
        from cxr.losses import make_loss, pos_weight_from_targets

        cfg, info = self.cfg, self.info
        files = DatasetFiles.locate(cfg.data_dir)
        self.data_version = data_version(files.data_entry)
        self.synthetic = files.synthetic  # `cxr synth` phantoms: readers must say so
        table = read_data_entry(files.data_entry, images_root=files.images_root, missing="keep")
        # (a resumed run killed before its split was written makes it now, from the same config)
        if info.is_main and not (self.resume and self.rundir.split.is_file()):
            write_split(cfg, files, table, self.run_dir)
        ddp.barrier(info)
        self.split = read_split(self.run_dir, str(cfg.split_path or "made"))
        tables = split_tables(table, self.split, self.log)
        augment = AugmentConfig(hflip=cfg.hflip, rotation=cfg.rotation, zoom=cfg.zoom,
                                brightness=cfg.brightness, fill_mode=cfg.fill_mode)
        cache = find_cache(files.root, self.image_size)
        if cache is not None:
            self.log(f"image cache: {cache!r}")
        pre = self.model.preprocess  # its input_size is self.image_size
        train_transform = build_transform(pre, train=True, augment=augment)
        on_device = use_gpu_augment(cfg.gpu_augment, info.device, cache)
        dataset = CachedUint8Dataset if on_device else CXRDataset
        self.train_ds = dataset(tables["train"], train_transform, seed=cfg.seed, cache=cache)
        self.batch_transform = BatchTransform.like(train_transform) if on_device else None
        where = (f"in batches on {info.device}" if on_device
                 else "per image in the DataLoader workers")
        self.log(f"augmentation: {where} (gpu_augment={cfg.gpu_augment})")
        self.val_ds = CXRDataset(tables["val"], build_transform(pre, train=False), seed=cfg.seed,
                                 cache=cache)
        self.val_targets = targets_of(tables["val"])

        if cfg.batch_size % info.world_size:
            raise ValueError(f"batch_size={cfg.batch_size} (global) is not divisible by the "
                             f"{info.world_size} processes")
        self.rank_batch = cfg.batch_size // info.world_size
        workers = cfg.workers if cfg.workers is not None else default_workers(
            int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        pin = info.device.type == "cuda"
        self.sampler = EpochSampler(len(self.train_ds), self.rank_batch, cfg.seed, info.rank,
                                    info.world_size, cfg.max_steps_per_epoch)
        self.train_loader = make_loader(EpochDataset(self.train_ds), self.rank_batch,
                                        self.sampler, workers, pin, cfg.seed)
        self.val_index = np.asarray(ddp.shard(len(self.val_ds), info), dtype=np.int64)
        self.val_loader = make_loader(torch.utils.data.Subset(self.val_ds, self.val_index.tolist()),
                                      self.rank_batch * 2, None, workers, pin, cfg.seed)
        self.steps_per_epoch = self.sampler.batches()

        params = {}
        if cfg.loss == "focal":
            params = {"alpha": cfg.focal_alpha, "gamma": cfg.focal_gamma,
                      "alpha_mode": cfg.focal_alpha_mode}
        elif cfg.loss == "weighted_bce":
            params = {"pos_weight": pos_weight_from_targets(targets_of(tables["train"]))}
        self.loss_fn = make_loss(cfg.loss, **params)
        self.log(f"{cfg.model}: {len(self.train_ds)} train / {len(self.val_ds)} val images at "
                 f"{self.image_size} px, {self.steps_per_epoch} steps/epoch of {cfg.batch_size} "
                 f"({info.world_size} process(es), {info.device}, {workers} workers); phases: "
                 f"{', '.join(p.name for p in self.phases)}; split "
                 f"{self.split.meta.get('strategy')} seed {self.split.meta.get('seed')} "
                 f"sha256 {str(self.split.meta.get('content_hash'))[:12]}; {self.data_version}")

    def load_resume_state(self) -> None:
        if not self.resume:
            return
        last = self.rundir.last
        if not last.is_file():
            self.log(f"resume: {last} does not exist yet (killed before the first epoch ended): "
                     "starting from the beginning")
            self.history.truncate_after(0)
            return
        ckpt = load_checkpoint(last)
        ts = ckpt.get("train_state")
        if ts is None:
            raise ValueError(f"{last} has no train_state: cannot resume from it")
        saved_hash = ckpt["meta"].get("split", {}).get("content_hash")
        if saved_hash != self.split.meta.get("content_hash"):
            raise ValueError(f"{self.rundir.split} is not the split {last} was trained "
                             f"on (sha256 {saved_hash} vs {self.split.meta.get('content_hash')})")
        saved = checkpoint_model_name(ckpt["meta"])  # e.g. the cross-attention net, once `fusion`
        if saved != self.cfg.model:
            raise ValueError(f"{last} holds a {saved} model (saved as "
                             f"{ckpt['meta']['model']['name']}) but the run's config.yaml says "
                             f"model: {self.cfg.model}; set model: {saved} in "
                             f"{self.run_dir / 'config.yaml'} to resume it")
        self.model.load_state_dict(ckpt["state_dict"])
        self.state = LoopState(**ts["loop"])
        rngs = ts["rng"]
        if len(rngs) == self.info.world_size:
            set_rng_state(rngs[self.info.rank])
        else:
            self.log(f"resume: saved with {len(rngs)} process(es), now {self.info.world_size}: "
                     "RNG streams are reseeded")
            seed_everything(self.cfg.seed + 1 + self.info.rank + self.state.global_step)
        self.resume_ckpt = ts
        self.history.truncate_after(self.state.epoch)
        phase = self.phases[min(self.state.phase_index, len(self.phases) - 1)]
        self.log(f"resumed from {last}: phase {phase.name}, {self.state.epoch} epoch(s) done, "
                 f"step {self.state.step} of the next")

    # -- bookkeeping ---------------------------------------------------------------------
    def elapsed(self) -> float:
        """Training time over all sessions of this run (the time budget counts this)."""
        return self.elapsed0 + (time.time() - self.session_start)

    def remaining_steps(self) -> int:
        s, S, cfg = self.state, self.steps_per_epoch, self.cfg
        if s.finished:
            return 0
        if cfg.epochs_budget == "total" and len(self.phases) > 1:
            return max(0, (cfg.epochs - s.epoch) * S - s.step)
        i = min(s.phase_index, len(self.phases) - 1)
        limit = ph.max_epochs(cfg, self.phases, i, s.phase_epochs_used)
        later_phases = (len(self.phases) - 1 - i) * cfg.epochs * S
        return max(0, (limit - s.phase_epoch) * S - s.step) + later_phases

    def report(self, force: bool = False, **fields) -> None:
        s = self.state
        remaining = self.remaining_steps()
        done_here = s.global_step - self.session_step0
        rate = (time.time() - self.session_start) / done_here if done_here > 0 else None
        phase = self.phases[min(s.phase_index, len(self.phases) - 1)]
        total = s.global_step + remaining
        current = s.epoch + 1 if s.step > 0 else max(s.epoch, 1)  # in progress, or just done
        values = dict(
            phase=phase.name, phase_index=min(s.phase_index, len(self.phases) - 1) + 1,
            phases=[p.name for p in self.phases], epoch=current,
            epochs=s.epoch + (remaining + s.step) // max(1, self.steps_per_epoch),
            step=s.step, steps=self.steps_per_epoch,
            global_step=s.global_step, total_steps=total,
            fraction=(s.global_step / total) if total else 1.0,
            eta_s=remaining * rate if rate is not None else None, elapsed_s=self.elapsed(),
            best_val_auc=s.best)
        self.progress.update(force=force, **(values | fields))

    def meta(self, phase: ph.Phase, metrics: dict | None) -> dict:
        return {"config": self.cfg.to_dict(), "split": self.split.summary(),
                "data_version": self.data_version, "synthetic": self.synthetic,
                "epoch": self.state.epoch, "phase": phase.name, "metrics": metrics or {},
                "world_size": self.info.world_size, "precision": self.precision.to_dict()}

    def save_last(self, phase: ph.Phase, optimizer, scheduler, metrics: dict | None) -> None:
        rngs = ddp.gather_objects(self.info, rng_state())  # every rank takes part
        if not self.info.is_main:
            return
        self.state.elapsed = self.elapsed()
        train_state = {"loop": dataclasses.asdict(self.state), "rng": rngs,
                       "optimizer": optimizer.state_dict() if optimizer else None,
                       "scheduler": scheduler.state_dict() if scheduler else None}
        save_checkpoint(self.rundir.last, self.model, self.meta(phase, metrics), train_state)

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> int:
        self.stopper = StopRequest(self.run_dir, self.info.is_main)
        self.progress.update(force=True, status="running", message="starting", error=None)
        try:
            self.build()
            # clocks start after setup: the ETA and the time budget measure training
            self.session_start, self.session_step0 = time.time(), self.state.global_step
            self.elapsed0 = self.state.elapsed
            if self.state.finished:
                self.log("this run has already finished; nothing to do")
                self.report(force=True, status="finished", message="finished")
                return 0
            outcome = self.run_phases()
        except NonFiniteLoss as exc:
            self.log(f"FAILED: {exc}")
            self.report(force=True, status="failed", error=str(exc), message="failed")
            return 1
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.log(f"FAILED: {error}")
            self.progress.update(force=True, status="failed", error=error, message="failed")
            raise
        finally:
            self.stopper.restore()
            close_logger(self.log_)
        return 0 if outcome in ("finished", "stopped") else 1

    def run_phases(self) -> str:
        s = self.state
        time_up = False
        while s.phase_index < len(self.phases) and not time_up:
            i = s.phase_index
            phase = self.phases[i]
            limit = ph.max_epochs(self.cfg, self.phases, i, s.phase_epochs_used)
            if s.phase_epoch < limit and s.bad_epochs < self.cfg.patience:
                outcome = self.run_phase(phase, limit)
                if outcome == "stopped":
                    return "stopped"
                time_up = outcome == "time"
            s.phase_epochs_used.append(s.phase_epoch)
            s.phase_index, s.phase_epoch, s.bad_epochs, s.phase_best = i + 1, 0, 0, None
        s.finished = True
        self.save_last(self.phases[-1], None, None, self.last_metrics)
        why = "time budget (max_minutes) reached" if time_up else "finished"
        best = finite_or_none(s.best)
        self.log(f"{why}: best val macro AUC {'n/a' if best is None else f'{best:.4f}'} at "
                 f"epoch {s.best_epoch}; {self.rundir.best}")
        self.report(force=True, status="finished", message=why, eta_s=0.0)
        return "finished"

    def setup_phase(self, phase: ph.Phase):
        s = self.state
        fresh = s.phase_epoch == 0 and s.step == 0
        if fresh and s.phase_index > 0:  # the report: fine-tuning starts from the best head
            best = load_checkpoint(self.rundir.best, map_location=self.info.device)
            unwrap(self.model).load_state_dict(best["state_dict"])
            self.log(f"phase {phase.name}: starting from best.pt (epoch {best['meta']['epoch']}, "
                     f"val macro AUC {best['meta']['metrics'].get('val_macro_auc')})")
        params = ph.apply_freeze(self.model, phase)
        optimizer = ph.make_optimizer(params, phase, self.cfg)
        scheduler = ph.make_scheduler(optimizer, phase, self.cfg)
        ts = self.resume_ckpt
        if ts is not None and not fresh and ts.get("optimizer") is not None:
            optimizer.load_state_dict(ts["optimizer"])
            scheduler.load_state_dict(ts["scheduler"])
        self.resume_ckpt = None
        n_train = sum(p.numel() for p in params)
        n_all = sum(p.numel() for p in self.model.parameters())
        self.log(f"phase {phase.name}: {n_train:,} of {n_all:,} parameters trainable, lr "
                 f"{optimizer.param_groups[0]['lr']:g}")
        return ddp.wrap(self.model, self.info), optimizer, scheduler

    def run_phase(self, phase: ph.Phase, limit: int) -> str:
        s, cfg = self.state, self.cfg
        wrapped, optimizer, scheduler = self.setup_phase(phase)
        while s.phase_epoch < limit and s.bad_epochs < cfg.patience:
            budget = cfg.max_minutes * 60 if cfg.max_minutes else None
            if budget and s.last_epoch_seconds and s.step == 0 and ddp.broadcast_flag(
                    self.info, self.elapsed() + s.last_epoch_seconds > budget):
                return "time"
            outcome = self.train_epoch(phase, wrapped, optimizer, limit)
            if outcome == "stopped":
                self.stopper.consume()
                self.save_last(phase, optimizer, scheduler, None)
                self.log(f"stopped ({self.stopper.reason}) at epoch {s.epoch + 1} step {s.step}; "
                         f"continue with: cxr train --resume {self.run_dir}")
                self.report(force=True, status="stopped",
                            message=f"stopped ({self.stopper.reason})")
                return "stopped"
            self.end_epoch(phase, optimizer, scheduler, limit, validate_now=outcome == "time")
            if outcome == "time":
                return "time"
        if s.bad_epochs >= cfg.patience:
            self.log(f"phase {phase.name}: early stop, no val macro AUC gain in {cfg.patience} "
                     "validations")
        return "done"

    def train_epoch(self, phase: ph.Phase, model, optimizer, limit: int) -> str:
        s, info = self.state, self.info
        budget = self.cfg.max_minutes * 60 if self.cfg.max_minutes else None
        self.sampler.set_epoch(s.epoch, skip_batches=s.step)
        ph.set_train_mode(unwrap(model), phase)
        bar = progress_bar(self.steps_per_epoch, f"{phase.name} {s.phase_epoch + 1}/{limit}",
                           info.is_main, initial=s.step)
        started = time.time()
        outcome = "done"
        try:
            for batch in self.train_loader:
                x, y = device_batch(batch, info.device, self.batch_transform,
                                    self.precision.memory_format)
                with self.precision.autocast():
                    logits = model(x)
                loss = self.loss_fn(logits.float(), y)
                value = float(loss.detach())
                bad, stop, late = ddp.any_flags(info, [not math.isfinite(value),
                                                       self.stopper.requested(),
                                                       bool(budget) and self.elapsed() > budget])
                if bad:
                    raise NonFiniteLoss(
                        f"training loss is not finite (this rank: {value}) in phase {phase.name}, "
                        f"epoch {s.epoch + 1}, step {s.step + 1} of {self.steps_per_epoch}; "
                        "nothing was saved over the last good checkpoints (best.pt, last.pt). "
                        "Try a lower learning rate.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                s.step += 1
                s.global_step += 1
                s.loss_sum += value * len(y)
                s.seen += len(y)
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
                self.report()
                if stop or late:
                    outcome = "stopped" if stop else "time"
                    break
        finally:
            bar.close()
            s.epoch_seconds += time.time() - started
        return outcome

    @torch.no_grad()
    def validate(self) -> dict:
        from cxr.evaluation.metrics import macro_auc, per_finding_auc
        model = unwrap(self.model)
        ddp.broadcast_buffers(model, self.info)  # every rank scores with rank 0's model
        model.eval()
        outputs = []
        for batch in self.val_loader:
            x, _ = device_batch(batch, self.info.device, None, self.precision.memory_format)
            outputs.append(model(x).float().cpu())  # fp32, as `cxr evaluate` scores best.pt
        logits = (torch.cat(outputs) if outputs else torch.zeros(0, len(FINDINGS))).numpy()
        logits, targets = ddp.gather_arrays(self.info, self.val_index, logits,
                                            self.val_targets[self.val_index])
        loss = float(self.loss_fn(torch.from_numpy(logits), torch.from_numpy(targets)))
        aucs = per_finding_auc(targets, to_proba(torch.from_numpy(logits).double()).numpy())
        macro, included = macro_auc(aucs)
        return {"val_loss": loss, "val_macro_auc": macro, "val_classes": int(included.sum()),
                "val_images": int(len(targets)),
                "val_auc": {f: finite_or_none(a) for f, a in zip(FINDINGS, aucs)},
                "val_excluded": [f for f, ok in zip(FINDINGS, included) if not ok]}

    def end_epoch(self, phase: ph.Phase, optimizer, scheduler, limit: int,
                  validate_now: bool) -> None:
        s, cfg = self.state, self.cfg
        loss_sum, seen = ddp.sum_values(self.info, [s.loss_sum, float(s.seen)])
        train_seconds = s.epoch_seconds
        t0 = time.time()
        due = validate_now or (s.phase_epoch + 1) % cfg.val_every == 0 or s.phase_epoch + 1 == limit
        val = self.validate() if due else None
        lr = optimizer.param_groups[0]["lr"]
        s.epoch, s.phase_epoch, s.step = s.epoch + 1, s.phase_epoch + 1, 0
        s.loss_sum, s.seen, s.epoch_seconds = 0.0, 0, 0.0
        metrics = {"train_loss": loss_sum / max(seen, 1.0), **(val or {})}
        self.last_metrics = json_safe(metrics)  # best.pt and last.pt carry the same
        if val is not None:
            score = val["val_macro_auc"] if math.isfinite(val["val_macro_auc"]) else -math.inf
            scheduler.step(score)
            improved_phase = s.phase_best is None or score > s.phase_best
            s.phase_best, s.bad_epochs = ((score, 0) if improved_phase
                                          else (s.phase_best, s.bad_epochs + 1))
            if s.best is None or score > s.best:
                s.best, s.best_epoch = score, s.epoch
                if self.info.is_main:
                    save_checkpoint(self.rundir.best, self.model,
                                    self.meta(phase, self.last_metrics))
        seconds = train_seconds + (time.time() - t0)
        s.last_epoch_seconds = seconds
        row = {"phase": phase.name, "epoch": s.epoch, "phase_epoch": s.phase_epoch,
               "train_loss": metrics["train_loss"], "lr": lr, "seconds": round(seconds, 3),
               "images_per_s": round(seen / train_seconds, 2) if train_seconds > 0 else ""}
        if val is not None:
            row.update({k: val[k] for k in ("val_loss", "val_macro_auc", "val_classes",
                                            "val_images")})
            row.update({f"val_auc_{f}": ("" if a is None else a)
                        for f, a in val["val_auc"].items()})
        self.history.append({k: ("" if isinstance(v, float) and not math.isfinite(v) else v)
                             for k, v in row.items()})
        self.save_last(phase, optimizer, scheduler, self.last_metrics)
        auc_text = (f"val loss {val['val_loss']:.4f} macro AUC {val['val_macro_auc']:.4f} "
                    f"({val['val_classes']}/{len(FINDINGS)} classes)" if val else "no validation")
        self.log(f"epoch {s.epoch} ({phase.name} {s.phase_epoch}/{limit}): train loss "
                 f"{metrics['train_loss']:.4f}, {auc_text}, lr {lr:g}, {seconds:.1f}s, "
                 f"{row['images_per_s']} img/s")
        self.report(force=True, message=f"epoch {s.epoch} done")
