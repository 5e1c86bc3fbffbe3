"""cxr.train: the report's two-phase schedule as `cxr train` (see loop.py, phases.py).

    from cxr.train import TrainConfig, train
    rc = train(TrainConfig(data_dir="data/demo", model="simple_cnn", image_size=128,
                           pretrained=False, epochs=3), "checkpoints/cnn")

Modules: config.py (TrainConfig: pydantic, YAML + --set), data.py (split, datasets, loaders),
phases.py (what each phase freezes and optimises), loop.py (epochs, validation, checkpoints,
resume, stop), precision.py (bf16 autocast / channels_last where native), distributed.py
(torchrun / DDP), progress.py (progress.json, history.csv, train.log), cli.py (`cxr train`).
"""
from cxr.train.config import TrainConfig, load_config


def train(cfg, run_dir, resume: bool = False, force: bool = False) -> int:
    """See cxr.train.loop.train (imported lazily: it pulls in torch models and data)."""
    from cxr.train.loop import train as _train
    return _train(cfg, run_dir, resume=resume, force=force)


__all__ = ["TrainConfig", "load_config", "train"]
