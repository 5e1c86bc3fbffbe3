"""The training augmentation's amounts, apart from the transforms that apply them
(cxr/data/transforms.py explains each), so that TrainConfig takes its defaults from here
without importing torchvision (0.8 s of a 1.9 s import, measured)."""
from dataclasses import dataclass

# What rotation and zoom put where they uncover the image: "reflect", Keras' RandomRotation
# and RandomZoom default (fill_mode="reflect", the report's pipeline), or "black" (zeros).
FILL_MODES = ("reflect", "black")


@dataclass(frozen=True)
class AugmentConfig:
    """The report's Keras augmentation amounts (TrainConfig's defaults come from here)."""
    hflip: float = 0.5        # probability of a horizontal flip
    rotation: float = 0.1     # Keras factor: fraction of a full turn (0.1 = 36 degrees)
    zoom: float = 0.1
    brightness: float = 0.1
    fill_mode: str = "reflect"  # FILL_MODES

    def __post_init__(self):
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"AugmentConfig.fill_mode must be one of {FILL_MODES}, got "
                             f"{self.fill_mode!r}")
        for name in ("hflip", "rotation", "zoom", "brightness"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {value}")
        if self.zoom >= 1.0:
            raise ValueError(f"AugmentConfig.zoom must be < 1 (scale 1 - zoom > 0), "
                             f"got {self.zoom}")
