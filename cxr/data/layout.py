"""Where the files of a ChestX-ray14 dataset directory live (`--data DIR`): NIH's download as
users unpack it, which `cxr synth` also writes (ARCHITECTURE.md, "Dataset directory").

    >>> from cxr.data.layout import DatasetFiles, data_version
    >>> files = DatasetFiles.locate("../shared/data/nih")
    >>> data_version(files.data_entry)
    'Data_Entry_2017_v2020.csv.gz sha256:...'
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cxr.hashing import file_sha256

# Exact names first, then NIH's 2020 revision (the one most published figures use); any other
# Data_Entry_2017*.csv[.gz] after those, alphabetically: the choice never depends on listing
# order.
_ENTRY_PREFERRED = ("Data_Entry_2017.csv", "Data_Entry_2017.csv.gz",
                    "Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz")


@dataclass(frozen=True)
class DatasetFiles:
    root: Path
    data_entry: Path
    train_val_list: Path | None
    test_list: Path | None
    bbox: Path | None
    images_root: Path | None  # None: no images downloaded yet (metadata-only work still runs)
    splits_dir: Path
    cache_dir: Path

    @classmethod
    def locate(cls, data_dir: str | Path) -> "DatasetFiles":
        root = Path(data_dir).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder {root} does not exist")
        return cls(
            root=root,
            data_entry=_find_data_entry(root),
            train_val_list=_optional(root / "train_val_list.txt"),
            test_list=_optional(root / "test_list.txt"),
            bbox=_first(root, "BBox_List_2017", ("BBox_List_2017.csv", "BBox_List_2017.csv.gz")),
            images_root=_images_root(root),
            splits_dir=root / "splits",
            cache_dir=root / "cache",
        )


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def _first(root: Path, stem: str, preferred: tuple[str, ...]) -> Path | None:
    for name in preferred:
        if (root / name).is_file():
            return root / name
    others = sorted(p for pattern in (f"{stem}*.csv", f"{stem}*.csv.gz")
                    for p in root.glob(pattern) if p.is_file())
    return others[0] if others else None


def _find_data_entry(root: Path) -> Path:
    found = _first(root, "Data_Entry_2017", _ENTRY_PREFERRED)
    if found is None:
        raise FileNotFoundError(
            f"no ChestX-ray14 metadata in {root}: expected Data_Entry_2017.csv or .csv.gz "
            "(NIH's Data_Entry_2017_v2020.csv and the original 2017 file are accepted too); "
            "run `cxr synth --out DIR` for a synthetic dataset in this layout")
    return found


def _images_root(root: Path) -> Path | None:
    # NIH ships images_001/images/*.png ... images_012/...: index from DIR, recursively.
    if any(p.is_dir() for p in root.glob("images_*")):
        return root
    return root / "images" if (root / "images").is_dir() else None


def data_version(path: str | Path) -> str:
    """'Data_Entry_2017_v2020.csv.gz sha256:0123456789ab': file name + short content hash,
    reported with every split and metric. Cached on (path, size, mtime), except for a file
    changed in the last few seconds, where a same-size rewrite could keep its mtime (git's
    "racy clean" problem): that one is hashed again."""
    path = Path(path).resolve()
    st = path.stat()
    if time.time() - st.st_mtime < _RACY_SECONDS:
        return _hash_version(path)
    return _cached_version(path, st.st_size, st.st_mtime_ns)


_RACY_SECONDS = 3.0


@lru_cache(maxsize=32)
def _cached_version(path: Path, size: int, mtime_ns: int) -> str:
    return _hash_version(path)


def _hash_version(path: Path) -> str:
    return f"{path.name} sha256:{file_sha256(path)[:12]}"
