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
