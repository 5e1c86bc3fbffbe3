"""The report's training settings that nothing else pins: Adam at Table 1's rates with its
minimum learning rate, and early stopping that really stops after `patience` validations
without a gain (MODEL_CARD.md, "The report vs this project")."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from cxr.models import create_model
from cxr.train import phases as ph
from cxr.train.config import TrainConfig


def test_table_1_is_the_default_config():
    cfg = TrainConfig()
    assert (cfg.lr_head, cfg.lr_finetune, cfg.min_lr) == (1e-3, 1e-5, 1e-5)
    assert (cfg.batch_size, cfg.epochs, cfg.loss, cfg.focal_alpha, cfg.focal_gamma) == (
        32, 25, "focal", 0.25, 2.0)
    assert cfg.weight_decay == 0.0


@pytest.mark.parametrize("phase", [ph.Phase("head", 1e-3, True), ph.Phase("finetune", 1e-5, False)])
def test_every_phase_optimises_with_adam_at_its_lr_and_the_min_lr_floor(phase):
    cfg = TrainConfig()
    params = list(create_model("simple_cnn", input_size=32).parameters())
    optimizer = ph.make_optimizer(params, phase, cfg)
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.param_groups[0]["lr"] == phase.lr
    assert optimizer.param_groups[0]["weight_decay"] == 0.0
    scheduler = ph.make_scheduler(optimizer, phase, cfg)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.min_lrs == [min(cfg.min_lr, phase.lr)]  # Table 1's 1e-5
    assert scheduler.mode == "max"  # on the validation macro AUC


def test_early_stopping_stops_after_patience_validations_without_a_gain(base_values, tmp_path):
    """A learning rate far below float32's resolution leaves the weights (the report's simple
    CNN: no BatchNorm statistics, no dropout) as they are, so the validation AUC of epoch 1 is
    never beaten: the run must end after 1 + patience epochs, not at `epochs`."""
    from cxr.train import train
    values = {**base_values, "epochs": 8, "patience": 2, "lr_head": 1e-20, "min_lr": 1e-20,
              "model_kwargs": {"report": True}}
    assert train(TrainConfig(**values), tmp_path / "run") == 0
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["val_macro_auc"].nunique() == 1  # really no gain
    assert "early stop, no val macro AUC gain in 2 validations" in (
        tmp_path / "run" / "train.log").read_text()
