import pytest
import torch

from cxr.models import create_model
from cxr.train import phases as ph
from cxr.train.config import TrainConfig


@pytest.fixture(scope="module")
def effnet():
    torch.manual_seed(0)
    return create_model("efficientnet_b0", input_size=32)


def _names(phases):
    return [p.name for p in phases]


def test_plan_follows_the_report_and_the_random_init_rule(effnet):
    cfg = TrainConfig()
    phases, notice = ph.plan(cfg, create_model("simple_cnn"))
    assert _names(phases) == ["full"] and "no ImageNet weights" in notice
    phases, notice = ph.plan(cfg, effnet)  # random init: one end-to-end phase at lr_head
    assert _names(phases) == ["full"] and phases[0].lr == cfg.lr_head and "random-init" in notice
    effnet.pretrained_backbone = True  # as after loading ImageNet weights
    try:
        phases, notice = ph.plan(cfg, effnet)
    finally:
        effnet.pretrained_backbone = False
    assert _names(phases) == ["head", "finetune"] and notice is None
    assert (phases[0].lr, phases[1].lr) == (1e-3, 1e-5)
    assert phases[0].freeze_backbone and not phases[1].freeze_backbone
    forced = ph.plan(TrainConfig(schedule="two_phase"), effnet)[0]
    assert _names(forced) == ["head", "finetune"]


def test_the_registry_capability_not_the_name_picks_one_phase(effnet, monkeypatch):
    import dataclasses
    from cxr.models import MODELS
    effnet.pretrained_backbone = True
    monkeypatch.setitem(MODELS, "efficientnet_b0",
                        dataclasses.replace(MODELS["efficientnet_b0"], pretrained=False))
    try:
        phases, notice = ph.plan(TrainConfig(), effnet)
    finally:
        effnet.pretrained_backbone = False
    assert _names(phases) == ["full"] and "efficientnet_b0" in notice


def test_epoch_budget_per_phase_or_total():
    two = [ph.Phase("head", 1e-3, True), ph.Phase("finetune", 1e-5, False)]
    per = TrainConfig(epochs=10)
    assert ph.max_epochs(per, two, 0, []) == 10 and ph.max_epochs(per, two, 1, [3]) == 10
    total = TrainConfig(epochs=10, epochs_budget="total")
    assert ph.max_epochs(total, two, 0, []) == 5
    assert ph.max_epochs(total, two, 1, [3]) == 7  # early-stopped head phase leaves more


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_head_phase_freezes_backbone_weights_and_batchnorm_statistics(effnet):
    head = ph.Phase("head", 1e-2, True)
    params = ph.apply_freeze(effnet, head)
    assert {id(p) for p in params} == {id(p) for p in effnet.head_parameters()}
    assert not any(p.requires_grad for p in effnet.backbone_parameters())
    before = _snapshot(effnet)
    opt = ph.make_optimizer(params, head, TrainConfig())
    ph.set_train_mode(effnet, head)
    assert effnet.training and not effnet.backbone.training  # BatchNorm in eval mode
    for _ in range(2):
        loss = effnet(torch.rand(4, 3, 32, 32)).sigmoid().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = _changed(before, _snapshot(effnet))
    assert changed and all(k.startswith("head.") for k in changed)  # running_mean too

    full = ph.Phase("finetune", 1e-2, False)
    params = ph.apply_freeze(effnet, full)
    assert len(params) == len(list(effnet.parameters()))
    ph.set_train_mode(effnet, full)
    assert effnet.backbone.training
    before = _snapshot(effnet)
    opt = ph.make_optimizer(params, full, TrainConfig())
    loss = effnet(torch.rand(4, 3, 32, 32)).sigmoid().mean()
    loss.backward()
    opt.step()
    changed = _changed(before, _snapshot(effnet))
    assert any(k.startswith("backbone.") and k.endswith("running_mean") for k in changed)
    assert any(k.startswith("backbone.") and k.endswith("weight") for k in changed)


def test_plateau_scheduler_never_goes_below_min_lr_nor_above_phase_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    cfg = TrainConfig(plateau_patience=1, plateau_factor=0.5, min_lr=1e-4)
    phase = ph.Phase("full", 1e-3, False)
    opt = ph.make_optimizer([p], phase, cfg)
    sched = ph.make_scheduler(opt, phase, cfg)
    for auc in [0.6] + [0.5] * 20:
        sched.step(auc)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    fine = ph.Phase("finetune", 1e-5, False)  # phase lr below min_lr: the floor is the lr
    opt = ph.make_optimizer([p], fine, cfg)
    sched = ph.make_scheduler(opt, fine, cfg)
    for auc in [0.6] + [0.5] * 5:
        sched.step(auc)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_finetune_batchnorm_frozen_keeps_statistics_but_trains_weights(effnet):
    """finetune_batchnorm=frozen (the Keras guide's fine-tuning): BatchNorm in eval mode, so
    its running statistics stay; every weight, BatchNorm's affine ones included, still trains."""
    cfg = TrainConfig(schedule="two_phase", finetune_batchnorm="frozen")
    finetune = ph.plan(cfg, effnet)[0][1]
    assert finetune.batchnorm_eval and not ph.plan(TrainConfig(), effnet)[0][0].batchnorm_eval
    params = ph.apply_freeze(effnet, finetune)
    ph.set_train_mode(effnet, finetune)
    bns = [m for m in effnet.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and effnet.backbone.training
    before = _snapshot(effnet)
    opt = ph.make_optimizer(params, finetune, TrainConfig())
    effnet(torch.rand(4, 3, 32, 32)).sigmoid().mean().backward()
    opt.step()
    changed = _changed(before, _snapshot(effnet))
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)
    assert any(k.startswith("backbone.bn") and k.endswith("weight") for k in changed)
