import argparse

import pytest

from cxr.train import cli


def _args(*argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_command_line_builds_the_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 4\nimage_size: 96\n")
    cfg, run_dir = cli.build_config(_args("--data", str(tmp_path), "--model", "fusion", "--out",
                                          str(tmp_path / "run"), "--config", str(config),
                                          "--set", "image_size=128"))
    assert (cfg.model, cfg.epochs, cfg.image_size) == ("fusion", 4, 128)
    assert cfg.data_dir == str(tmp_path.resolve()) and run_dir == tmp_path / "run"


def test_command_line_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="--out"):
        cli.build_config(_args("--data", str(tmp_path), "--model", "fusion"))
    with pytest.raises(ValueError, match="--data"):
        cli.build_config(_args("--model", "fusion", "--out", str(tmp_path / "r")))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"data_dir: {tmp_path}\nmodel: simple_cnn\n")
    with pytest.raises(ValueError, match="cannot change a run being resumed"):
        cli.build_config(_args("--resume", str(run), "--set", "epochs=50"))
    with pytest.raises(ValueError, match="do not combine"):
        cli.build_config(_args("--resume", str(run), "--model", "fusion"))
    cfg, run_dir = cli.build_config(_args("--resume", str(run), "--set", "workers=0"))
    assert cfg.workers == 0 and cfg.model == "simple_cnn" and run_dir == run
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        cli.build_config(_args("--resume", str(tmp_path / "nothing")))


def test_model_choices_and_help_come_from_the_registry(capsys):
    from cxr.models import MODELS
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    action = next(a for a in parser._actions if a.dest == "model")
    assert list(action.choices) == list(MODELS)
    assert all(name in action.help and info.description in action.help
               for name, info in MODELS.items())
    with pytest.raises(SystemExit):
        _args("--model", "resnet50")
    assert "invalid choice: 'resnet50'" in capsys.readouterr().err
