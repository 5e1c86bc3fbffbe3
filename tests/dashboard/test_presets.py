"""cxr/dashboard/presets.py: what each preset puts in the launch form launches exactly it."""
from __future__ import annotations

import pytest
import torch

from cxr.dashboard import jobs, presets
from cxr.dashboard.presets import CPU_DEMO, PRESETS, REPORT, Preset, form_values
from cxr.train.config import TrainConfig, load_config


def launched_config(form: presets.FormValues, data="/d"):
    """The TrainConfig a launch from this form would run (as the Train page builds it)."""
    lines = [ln for ln in form.extra.splitlines() if ln.strip()]
    return jobs.train_config(data, form.fields["model"],
                             presets.settings_from_form(form.fields), lines)


@pytest.mark.parametrize("device, expected", [
    ("cuda", REPORT), (torch.device("cuda", 1), REPORT), ("cpu", CPU_DEMO), ("mps", CPU_DEMO),
    (torch.device("cpu"), CPU_DEMO)])
def test_the_report_preset_with_cuda_the_cpu_demo_elsewhere(device, expected):
    assert presets.default_preset(device) == expected


def test_without_a_gpu_this_machine_defaults_to_the_cpu_demo(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("cxr.device._mps_available", lambda: False)
    assert presets.default_preset() == CPU_DEMO
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert presets.default_preset() == REPORT


def test_the_cpu_demo_launches_exactly_configs_demo_yaml():
    form = form_values(PRESETS[CPU_DEMO], model="fusion")
    assert launched_config(form) == load_config(presets.DEMO_CONFIG, data_dir="/d",
                                                model="fusion")
    assert form.fields["max_steps_per_epoch"] > 0 and form.fields["max_minutes"] > 0


def test_the_cpu_demo_is_read_from_its_file(tmp_path, monkeypatch):
    path = tmp_path / "demo.yaml"
    path.write_text(presets.DEMO_CONFIG.read_text().replace("batch_size: 32", "batch_size: 8"))
    monkeypatch.setitem(PRESETS, CPU_DEMO, Preset(CPU_DEMO, "test", path=path))
    form = form_values(PRESETS[CPU_DEMO], model="fusion")
    assert form.fields["batch_size"] == 8
    path.write_text("batch_sise: 8\n")
    with pytest.raises(ValueError, match="unknown config key 'batch_sise'"):
        form_values(PRESETS[CPU_DEMO], model="fusion")


def test_the_report_preset_is_table_1():
    cfg = launched_config(form_values(PRESETS[REPORT], model="simple_cnn"))
    assert (cfg.model, cfg.image_size, cfg.pretrained, cfg.batch_size) == ("fusion", 224, True, 32)
    assert (cfg.schedule, cfg.epochs, cfg.epochs_budget) == ("two_phase", 25, "per_phase")
    assert (cfg.lr_head, cfg.lr_finetune, cfg.min_lr) == (1e-3, 1e-5, 1e-5)
    assert (cfg.loss, cfg.focal_alpha, cfg.focal_gamma) == ("focal", 0.25, 2.0)
    assert (cfg.hflip, cfg.rotation, cfg.zoom, cfg.brightness) == (0.5, 0.1, 0.1, 0.1)
    assert (cfg.split_strategy, cfg.patient_fraction) == ("patient", 0.5)
    assert cfg.max_steps_per_epoch is None and cfg.max_minutes is None  # whole epochs, no budget


def test_a_preset_without_a_model_keeps_the_forms_model():
    assert form_values(PRESETS[CPU_DEMO], model="densenet121").fields["model"] == "densenet121"
    assert form_values(PRESETS[REPORT], model="densenet121").fields["model"] == "fusion"


def test_every_config_key_survives_the_form():
    values = {"model": "densenet121", "image_size": None, "weights": None,
              "model_kwargs": {"drop_rate": 0.3}, "split_fractions": [0.8, 0.1, 0.1],
              "workers": None, "amp": False, "lr_head": 3e-4}
    form = form_values(Preset("x", "test", fixed=values), model="fusion")
    assert form.fields["image_size"] == 224  # "the model's own" shown as its size
    assert form.fields["weights"] == "" and form.fields["max_steps_per_epoch"] == 0
    cfg = launched_config(form)
    assert cfg == TrainConfig(**{**values, "image_size": 224, "data_dir": "/d"})


def test_the_form_shows_none_as_zero_and_back():
    fields = form_values(PRESETS[REPORT], model="fusion").fields
    settings = presets.settings_from_form({**fields, "weights": "  "})
    assert settings["max_steps_per_epoch"] is None and settings["max_minutes"] is None
    assert settings["weights"] is None


def test_the_summary_is_made_from_the_values(tmp_path, monkeypatch):
    path = tmp_path / "demo.yaml"
    path.write_text(presets.DEMO_CONFIG.read_text().replace("image_size: 128", "image_size: 96"))
    monkeypatch.setitem(PRESETS, CPU_DEMO, Preset(CPU_DEMO, "the demo", path=path))
    line = PRESETS[CPU_DEMO].summary()
    assert line.startswith("the demo: any model, 96 px, random init") and "budget" in line
    assert "`fusion`, 224 px, ImageNet weights" in PRESETS[REPORT].summary()
