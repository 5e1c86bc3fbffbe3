"""`cxr prepare`: decode every image once, resize it, keep it as uint8 in a memory-mapped array.

    cxr prepare --data data/demo                      # -> data/demo/cache/images_256.u8 ...
    cxr prepare --data DIR --size 256 --workers 2 [--force] [--cache-dir OUT]

An epoch then reads 64 KB per image from the page cache instead of decoding a 1024x1024 PNG
(see BENCHMARKS.md, "Image cache"). Files, for size S and N images (sorted by name):

    DIR/cache/images_S.u8     raw uint8, shape (N, S, S), C order, 0 = black
    DIR/cache/index_S.csv     image,row,bytes,mtime_ns (row into the array; source file stamp)
    DIR/cache/images_S.json   size, count, data_version (of Data_Entry), created

Writes go to temporary names and are renamed at the end, the JSON last: a cache without its
JSON is incomplete and ignored. An up-to-date cache (same size, images, file sizes and
mtimes, and data_version) is kept unless --force. Any unreadable image stops the build with
a list of the bad files and writes nothing. Images are resized like `EvalTransform`
(bilinear, antialias); 16-bit sources keep 8 bits.

    >>> from cxr.data.cache import open_cache
    >>> cache = open_cache("data/demo", 256)        # None when not prepared
    >>> cache.get("00000001_000.png")               # float32 256x256 in [0, 1]
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cxr.data.images import ImageLoadError, load_image

DEFAULT_SIZE = 256
_INDEX_FIELDS = ("image", "row", "bytes", "mtime_ns")


@dataclass(frozen=True)
class CachePaths:
    data: Path
    index: Path
    meta: Path

    @classmethod
    def of(cls, cache_dir: str | Path, size: int) -> "CachePaths":
        d = Path(cache_dir)
        return cls(d / f"images_{size}.u8", d / f"index_{size}.csv", d / f"images_{size}.json")


class ImageCache:
    """Read side: `name in cache`, `cache.get(name)` -> float32 SxS in [0, 1]. The memmap is
    opened lazily and not pickled, so DataLoader workers each map the file themselves."""

    def __init__(self, paths: CachePaths, meta: dict, index: list[dict]):
        self.paths, self.meta, self.size = paths, meta, int(meta["size"])
        self.names = [row["image"] for row in index]
        self._rows = {name: i for i, name in enumerate(self.names)}
        self._stamps = [(int(row["bytes"]), int(row["mtime_ns"])) for row in index]
        self._array: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._rows

    def get_uint8(self, name: str) -> np.ndarray:
        if name not in self._rows:
            raise KeyError(f"{name} is not in the image cache {self.paths.data}; "
                           "rerun `cxr prepare --force`")
        if self._array is None:
            self._array = np.memmap(self.paths.data, dtype=np.uint8, mode="r",
                                    shape=(len(self.names), self.size, self.size))
        return self._array[self._rows[name]]

    def get(self, name: str) -> np.ndarray:
        return self.get_uint8(name).astype(np.float32) * np.float32(1.0 / 255.0)

    def is_current(self, names: Sequence[str], stamps: Sequence[tuple[int, int]],
                   data_version: str | None) -> bool:
        return (list(names) == self.names and list(stamps) == self._stamps
                and data_version == self.meta.get("data_version"))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __repr__(self) -> str:
        return f"ImageCache({self.paths.data}, count={len(self)}, size={self.size})"


def open_cache(data_dir: str | Path, size: int = DEFAULT_SIZE,
               cache_dir: str | Path | None = None) -> ImageCache | None:
    """The cache `cxr prepare` wrote for DIR (default DIR/cache), or None when there is none.
    A cache whose files disagree with each other is an error, never silently ignored."""
    paths = CachePaths.of(cache_dir if cache_dir is not None else Path(data_dir) / "cache", size)
    if not paths.meta.is_file():
        return None
    meta = json.loads(paths.meta.read_text())
    with open(paths.index, newline="") as f:
        index = list(csv.DictReader(f))
    expected = int(meta["count"]) * size * size
    found = paths.data.stat().st_size if paths.data.is_file() else -1
    if int(meta["size"]) != size or len(index) != int(meta["count"]) or found != expected:
        raise ValueError(f"image cache {paths.data} is inconsistent ({found} bytes, "
                         f"{len(index)} index rows, JSON {meta}); rerun `cxr prepare --force`")
    return ImageCache(paths, meta, index)


def build_cache(items: Iterable[tuple[str, str | Path]], cache_dir: str | Path,
                size: int = DEFAULT_SIZE, workers: int | None = None,
                data_version: str | None = None, force: bool = False,
                progress: bool = True) -> tuple[ImageCache, bool]:
    """(image name, path) pairs -> (cache, built). built is False when an up-to-date cache
    was kept. Raises ImageLoadError listing every unreadable image (nothing written)."""
    items = sorted((str(name), Path(path)) for name, path in items)
    names = [name for name, _ in items]
    _check_items(names, size)
    stamps = [_stamp(path) for _, path in items]
    try:
        existing = None if force else open_cache(None, size, cache_dir=cache_dir)
    except (ValueError, OSError, KeyError):  # damaged: rebuilding is what `prepare` is for
        existing = None
    if existing is not None and existing.is_current(names, stamps, data_version):
        return existing, False
    paths = CachePaths.of(cache_dir, size)
    paths.data.parent.mkdir(parents=True, exist_ok=True)
    tmp = CachePaths(*(p.with_name(f"{p.name}.tmp-{os.getpid()}") for p in vars(paths).values()))
    try:
        _write_pixels(tmp.data, [path for _, path in items], size, workers, progress)
        _write_index(tmp.index, names, stamps)
        meta = {"size": size, "count": len(names), "data_version": data_version,
                "layout": "uint8 (count, size, size), C order, 0 = black",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp.meta.write_text(json.dumps(meta, indent=2) + "\n")
        _commit(tmp, paths)
    finally:
        for p in vars(tmp).values():
            p.unlink(missing_ok=True)
    return open_cache(None, size, cache_dir=cache_dir), True


def _check_items(names: list[str], size: int) -> None:
    if size < 1:
        raise ValueError(f"cache size must be positive, got {size}")
    if not names:
        raise ValueError("no images to cache")
    dupes = sorted({a for a, b in zip(names, names[1:]) if a == b})
    if dupes:
        raise ValueError(f"{len(dupes)} image names occur twice, e.g. {dupes[:3]}")


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return st.st_size, st.st_mtime_ns


def _write_pixels(target: Path, paths: list[Path], size: int, workers: int | None,
                  progress: bool) -> None:
    from tqdm import tqdm

    out = np.memmap(target, dtype=np.uint8, mode="w+", shape=(len(paths), size, size))
    errors = []
    jobs = [(i, str(p), size) for i, p in enumerate(paths)]
    with _pool(workers, len(paths)) as imap:
        for i, result in tqdm(imap(_decode, jobs), total=len(jobs), desc="cxr prepare",
                              unit="img", disable=None if progress else True):
            if isinstance(result, str):
                errors.append(result)
            else:
                out[i] = result
    out.flush()
    del out
    if errors:
        raise ImageLoadError(f"{len(errors)} of {len(paths)} images could not be read; no cache "
                             "written. Fix or remove them:\n  " + "\n  ".join(errors[:20]))


def _decode(job: tuple[int, str, int]) -> tuple[int, np.ndarray | str]:
    """Worker: one file -> uint8 SxS, or the error message (collected, reported together)."""
    from cxr.data.transforms import resize_to_uint8

    i, path, size = job
    try:
        return i, resize_to_uint8(load_image(path).pixels, size)
    except ImageLoadError as exc:
        return i, str(exc)


@contextmanager
def _pool(workers: int | None, n: int):
    """An imap: in-process for one worker, else over a process pool. Fork where the OS has it
    (as torch's DataLoader does; workers use one torch thread)."""
    import torch

    workers = max(1, min(workers or os.cpu_count() or 1, n))
    if workers == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one image at a time: threads only add overhead at this size
        try:
            yield map
        finally:
            torch.set_num_threads(threads)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = multiprocessing.get_context(method).Pool(workers, torch.set_num_threads, (1,))
    try:
        yield lambda fn, jobs: pool.imap(fn, jobs, chunksize=4)
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


def _write_index(target: Path, names: list[str], stamps: list[tuple[int, int]]) -> None:
    with open(target, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_INDEX_FIELDS)
        writer.writerows((name, i, b, m) for i, (name, (b, m)) in enumerate(zip(names, stamps)))


def _commit(tmp: CachePaths, final: CachePaths) -> None:
    # Invalidate first (no JSON = no cache), then move the parts, the JSON last.
    final.meta.unlink(missing_ok=True)
    for src, dst in ((tmp.data, final.data), (tmp.index, final.index), (tmp.meta, final.meta)):
        os.replace(src, dst)


# --- command line -------------------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (ChestX-ray14 layout)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"cached side length in pixels (default {DEFAULT_SIZE})")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: all CPU cores)")
    parser.add_argument("--cache-dir", default=None, help="where to write (default DIR/cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")


def run(args) -> int:
    from cxr.data.layout import DatasetFiles, data_version
    from cxr.data.metadata import read_data_entry

    files = DatasetFiles.locate(args.data)
    if files.images_root is None:
        raise FileNotFoundError(f"no images under {files.root} (expected images/ or "
                                "images_*/): nothing to cache")
    table = read_data_entry(files.data_entry, files.images_root, missing="drop")
    cache_dir = Path(args.cache_dir) if args.cache_dir else files.cache_dir
    start = time.perf_counter()
    cache, built = build_cache(zip(table["image"], table["path"]), cache_dir, args.size,
                               args.workers, data_version(files.data_entry), args.force)
    verb = f"built in {time.perf_counter() - start:.1f} s" if built else "up to date, kept"
    print(f"image cache {cache.paths.data}: {len(cache)} images at {cache.size} px, {verb}")
    return 0
