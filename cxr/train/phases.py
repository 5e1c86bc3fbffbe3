"""The report's schedule as a list of phases, and what each phase freezes and optimises.

    phase "head"      backbone frozen (requires_grad False, kept in eval mode so its BatchNorm
                      statistics stay ImageNet's), Adam on the head at lr_head (1e-3)
    phase "finetune"  from the best "head" weights, everything trainable, a fresh Adam at
                      lr_finetune (1e-5); BatchNorm in train mode (batch statistics, running
                      averages updated) unless finetune_batchnorm=frozen keeps it in eval mode
                      (the Keras transfer-learning guide's advice; the report does not say)
    phase "full"      one end-to-end phase at lr_head: a model without ImageNet weights
                      (the registry's `pretrained` is False: simple_cnn), and any random-init
                      backbone under schedule=auto, because a frozen random backbone teaches
                      the head nothing and 1e-5 barely moves it

schedule=two_phase / single_phase force either plan. Every phase: ReduceLROnPlateau on
validation macro AUC (make_scheduler; its floor never above the phase's own lr), early stopping
after `patience` validations without a gain over the phase's best.

Epoch budget: `epochs_budget=per_phase` (default) lets each phase run up to `epochs`
epochs, like the report's two Keras fit() calls; `total` caps the whole run at `epochs`: the
head phase gets at most half (rounded down, at least 1), fine-tuning whatever it left.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cxr.models import model_info, model_uses_pretrained


@dataclass(frozen=True)
class Phase:
    name: str               # head | finetune | full
    lr: float
    freeze_backbone: bool
    batchnorm_eval: bool = False  # backbone BatchNorm in eval mode although it trains


def plan(cfg, model: nn.Module) -> tuple[list[Phase], str | None]:
    """(phases, notice to log or None)."""
    return plan_for(cfg, model.model_name, model_uses_pretrained(model))


def plan_for(cfg, name: str, uses_pretrained: bool) -> tuple[list[Phase], str | None]:
    """plan() before the model exists (the Train page's cost estimate): `uses_pretrained` says
    whether the backbone will start from ImageNet weights."""
    head = Phase("head", cfg.lr_head, True)
    finetune = Phase("finetune", cfg.lr_finetune, False, cfg.finetune_batchnorm == "frozen")
    full = Phase("full", cfg.lr_head, False)
    if cfg.schedule == "two_phase":
        return [head, finetune], None
    if cfg.schedule == "single_phase":
        return [full], None
    if not model_info(name).pretrained:
        return [full], f"{name} trains end to end in one phase (it has no ImageNet weights)"
    if not uses_pretrained:
        return [full], (f"{name}: random-init backbone (pretrained=false, no weights "
                        "file), so the frozen-backbone phase is skipped: one phase trains "
                        f"everything at lr_head={cfg.lr_head:g} (schedule=two_phase forces the "
                        "report's two phases)")
    return [head, finetune], None


def max_epochs(cfg, phases: list[Phase], index: int, used: list[int]) -> int:
    """Most epochs phase `index` may run, given the epochs earlier phases used."""
    if cfg.epochs_budget == "per_phase" or len(phases) == 1:
        return cfg.epochs
    if index == 0:
        return max(1, cfg.epochs // 2)
    return max(0, cfg.epochs - sum(used[:index]))


def apply_freeze(model: nn.Module, phase: Phase) -> list[nn.Parameter]:
    """Set requires_grad for the phase and return the parameters to optimise."""
    frozen = {id(p) for p in model.backbone_parameters()} if phase.freeze_backbone else set()
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: nn.Module, phase: Phase) -> None:
    """train() for the step, but a frozen backbone stays in eval mode (BatchNorm running
    statistics neither used from the batch nor updated), and so does the backbone's BatchNorm
    under finetune_batchnorm=frozen (its affine weights still train)."""
    model.train()
    for module in model.backbone_modules():
        if phase.freeze_backbone:
            module.eval()
        elif phase.batchnorm_eval:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()


def make_optimizer(params, phase: Phase, cfg) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=phase.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, phase: Phase, cfg):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
        min_lr=min(cfg.min_lr, phase.lr))
