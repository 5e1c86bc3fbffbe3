import typing

import pytest
import yaml

from cxr.train.config import TrainConfig, dump_yaml, load_config, read_yaml


def test_defaults_are_the_reports_table_1():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.epochs, cfg.lr_head, cfg.lr_finetune) == (32, 25, 1e-3, 1e-5)
    assert (cfg.loss, cfg.focal_alpha, cfg.focal_gamma) == ("focal", 0.25, 2.0)
    assert cfg.split_fractions == [0.7, 0.1, 0.2] and cfg.pretrained and cfg.schedule == "auto"


def test_yaml_then_set_overrides_are_typed_by_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("image_size: 96\nlr_head: 1e-3\nmodel: fusion\npretrained: true\n")
    cfg = load_config(path, ["image_size=128", "lr_head=3e-4", "pretrained=false",
                             "weights=none", "max_minutes=9.5", "model_kwargs.drop_rate=0.2",
                             "split_fractions=[0.8,0.1,0.1]", "workers=null"],
                      data_dir="/data", model="simple_cnn")
    assert cfg.image_size == 128 and isinstance(cfg.image_size, int)
    assert cfg.lr_head == pytest.approx(3e-4) and cfg.pretrained is False
    assert cfg.weights is None and cfg.max_minutes == 9.5 and cfg.workers is None
    assert cfg.model == "simple_cnn" and cfg.data_dir == "/data"  # keyword values beat the file
    assert cfg.model_kwargs == {"drop_rate": 0.2} and cfg.split_fractions == [0.8, 0.1, 0.1]


def test_fusion_weights_may_be_a_mapping():
    cfg = load_config(None, ["weights={densenet121: a.pt, efficientnet_b3: b.pt}"])
    assert cfg.weights == {"densenet121": "a.pt", "efficientnet_b3": "b.pt"}
    assert load_config(None, ["weights=dn.safetensors"]).weights == "dn.safetensors"


@pytest.mark.parametrize("override, words", [
    ("image_sise=128", "image_sise"),            # unknown key, named
    ("epochs=2.5", "epochs"),                    # not an integer
    ("pretrained=maybe", "pretrained"),
    ("lr_head=fast", "lr_head"),
    ("schedule=three_phase", "schedule"),
    ("batch_size=0", "batch_size"),
    ("lr_finetune=-1", "lr_finetune"),
    ("split_fractions=[0.5,0.5]", "split_fractions"),
    ("epochs", "key=value"),
])
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ValueError, match=words):
        load_config(None, [override])


def test_unknown_key_in_yaml_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        read_yaml(path)


def test_dump_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["image_size=64", "model_kwargs.dim=128", "max_minutes=3"],
                      data_dir="/d")
    dump_yaml(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["image_size"] == 64


def test_demo_config_is_valid():
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    cfg = load_config(path, data_dir="/d")
    assert cfg.pretrained is False and cfg.image_size == 128 and cfg.max_minutes is not None


# One test per kind of message: each names the key, the value and what was expected.
@pytest.mark.parametrize("override, message", [
    ("image_sise=128", "unknown config key 'image_sise'; did you mean 'image_size'?"),
    ("learning_rate=0.1", "unknown config key 'learning_rate'; known keys: data_dir, "),
    ("epochs=2.5", "config epochs='2.5': expected a valid integer"),
    ("lr_head=fast", "config lr_head='fast': expected a valid number"),
    ("pretrained=maybe", "config pretrained='maybe': expected a valid boolean"),
    ("split_fractions=0.7", "config split_fractions='0.7': expected a valid list"),
    ("split_fractions=[0.8,x,0.1]", "config split_fractions='[0.8,x,0.1]': expected a valid "
                                    "number, unable to parse string as a number (item 1)"),
    ("model_kwargs=[1,2]", "config model_kwargs='[1,2]': expected a valid dictionary"),
    ("weights=[a.pt]", "config weights='[a.pt]': expected a valid string; or expected a valid "
                       "dictionary"),
    ("batch_size=0", "config batch_size='0': expected greater than or equal to 1"),
    ("plateau_factor=1.5", "config plateau_factor='1.5': expected less than 1"),
    ("image_size=8", "config image_size='8': expected greater than or equal to 16"),
    ("lr_head=nan", "config lr_head='nan': expected a finite number"),
    ("schedule=three_phase", "config schedule='three_phase': expected 'auto', 'two_phase' or "
                             "'single_phase'"),
    ("focal_alpha_mode=alpha_t", "config focal_alpha_mode='alpha_t': expected 'balanced' or "
                                 "'constant'"),
    ("model=resnet50", "config model='resnet50': unknown model; expected one of "),
    ("loss=dice", "config loss='dice': unknown loss; expected one of focal, bce, weighted_bce"),
    ("split_fractions=[0.8,", "config split_fractions='[0.8,': not valid YAML: "),
    ("model_kwargs.dim=[128", "config model_kwargs.dim='[128': not valid YAML: "),
    ("epochs", "--set 'epochs': expected key=value"),
])
def test_each_message_names_key_value_and_expectation(override, message):
    with pytest.raises(ValueError) as caught:
        load_config(None, [override])
    assert str(caught.value).startswith(message), str(caught.value)


def test_keyword_construction_is_validated_too():
    with pytest.raises(ValueError, match=r"^config epochs=True: expected a number, not true/false"):
        TrainConfig(epochs=True)  # a YAML `epochs: yes` would otherwise train for 1 epoch
    with pytest.raises(ValueError, match=r"^config split_fractions=\[0.5, 0.5\]: expected at "
                                         r"least 3 items"):
        TrainConfig(split_fractions=[0.5, 0.5])
    assert TrainConfig(image_size="96", pretrained="no").image_size == 96


def test_yaml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: [3\n")
    with pytest.raises(ValueError, match=f"config file {path} is not valid YAML"):
        read_yaml(path)


def test_focal_alpha_mode_defaults_to_constant_and_old_runs_resume_balanced(tmp_path):
    """The default is the report's printed formula (measured better on the demo); a run whose
    config.yaml predates the setting trained with alpha_t and resumes with it."""
    from cxr.train.config import dump_yaml, read_run_config
    assert TrainConfig().focal_alpha_mode == "constant"
    assert load_config(None, ["focal_alpha_mode=balanced"]).focal_alpha_mode == "balanced"
    path = tmp_path / "config.yaml"
    dump_yaml(TrainConfig(), path)
    assert read_run_config(path)["focal_alpha_mode"] == "constant"
    path.write_text("model: simple_cnn\n")  # a run saved before the field existed
    assert read_run_config(path)["focal_alpha_mode"] == "balanced"


def test_uncertainty_rule_defaults_to_the_reports_mean_and_travels_in_the_config():
    from cxr.uncertainty import UNCERTAINTY_RULES
    assert TrainConfig().uncertainty_rule == "mean"
    assert load_config(None, ["uncertainty_rule=any"]).to_dict()["uncertainty_rule"] == "any"
    with pytest.raises(ValueError, match="config uncertainty_rule='max': expected 'mean' or 'any'"):
        load_config(None, ["uncertainty_rule=max"])
    assert set(typing.get_args(TrainConfig.model_fields["uncertainty_rule"].annotation)) == \
        set(UNCERTAINTY_RULES)


def test_to_dict_is_json_safe_and_rebuilds_the_config():
    import json
    cfg = load_config(None, ["weights={densenet121: a.pt, efficientnet_b3: b.pt}",
                             "model_kwargs.drop_rate=0.3", "max_minutes=2"])
    values = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig(**values) == cfg and values["focal_alpha_mode"] == "constant"


def test_empty_model_kwargs_in_yaml_is_an_empty_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_kwargs:\nsplit_path: null\n")
    cfg = load_config(path)
    assert cfg.model_kwargs == {} and cfg.split_path is None


def test_model_and_loss_choices_come_from_the_registries():
    from cxr.losses import LOSSES
    from cxr.models import MODELS
    for name in MODELS:
        assert load_config(None, [f"model={name}"]).model == name
    for name in LOSSES:
        assert load_config(None, [f"loss={name}"]).loss == name
    with pytest.raises(ValueError) as caught:
        load_config(None, ["model=resnet50"])
    assert all(name in str(caught.value) for name in MODELS)


def test_a_run_written_before_fill_mode_resumes_as_it_was_trained(tmp_path):
    """Black fill and, for a baseline, both head dropouts at drop_rate: the defaults then."""
    from cxr.train.config import dump_yaml, read_run_config
    path = tmp_path / "config.yaml"
    old = TrainConfig(model="densenet121", model_kwargs={"drop_rate": 0.3}).to_dict()
    del old["fill_mode"]
    path.write_text(yaml.safe_dump(old))
    values = read_run_config(path)
    assert values["fill_mode"] == "black"
    assert values["model_kwargs"] == {"drop_rate": 0.3, "hidden_drop_rate": 0.3}
    dump_yaml(TrainConfig(model="densenet121"), path)  # written today: today's defaults
    values = read_run_config(path)
    assert values["fill_mode"] == "reflect" and values["model_kwargs"] == {}
