"""Plain PyTorch DDP for `cxr train`, and sharded `cxr predict` / `cxr evaluate`, launched by
torchrun (one process per GPU).

    # one GPU, or CPU: no launcher needed
    cxr train --data DIR --model fusion --out RUN_DIR
    # one node, 8 GPUs (batch_size is the GLOBAL batch: 32 -> 4 per GPU)
    torchrun --nproc_per_node=8 -m cxr.cli train --data DIR --model fusion --out RUN_DIR
    torchrun --nproc_per_node=8 $(which cxr) train ...            # same, via the console script
    # two nodes of 8 GPUs: run on each node, node_rank 0 and 1, host = node 0's address
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 -m cxr.cli train --data DIR --model fusion --out RUN_DIR
    # CPU, 2 processes (what the tests do; gloo backend)
    torchrun --nproc_per_node=2 -m cxr.cli train --data DIR --model simple_cnn --out RUN_DIR \\
             --set device=cpu

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; without them this is a
1-process run and nothing here touches torch.distributed. The backend is nccl on CUDA and
gloo otherwise. RUN_DIR and DIR must be on storage every node sees (rank 0 writes the run
directory; every rank reads the dataset and, when phase 2 starts, best.pt).

Validation: each rank scores `indices[rank::world]` (no padding: no image counted twice); the
predictions are gathered back in dataset order, so every rank computes the same metrics and
takes the same decisions (early stopping; stop requests and non-finite losses are all-reduced).

Inference (`cxr predict`, `cxr evaluate`): whole batches per rank (`shard_batches`), gathered
to rank 0 (`gather_to_main`, `gather_arrays`), which alone writes; with each film's dropout
seeded by its name (cxr.uncertainty), the files are the single-process run's.
"""
from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from cxr.device import pick_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(preference: str = "auto") -> DistInfo:
    """Read torchrun's environment, pick the device, init the process group if world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "mps":
            raise ValueError("multi-process training on MPS is not supported; use device=cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def teardown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        # DDP wrappers sit in reference cycles (their hooks point back at them) and hold the
        # process group; left to interpreter exit, gloo's threads are torn down in the wrong
        # order and the process aborts ("terminate called without an active exception") in
        # ~1 of 4 CPU runs (torch 2.14.1). Collecting them first makes exit clean: 0 of 25.
        gc.collect()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def any_flags(info: DistInfo, flags: list[bool]) -> list[bool]:
    """Element-wise OR of boolean flags over all ranks (e.g. [stop requested, loss not finite])."""
    if not info.distributed:
        return list(flags)
    t = torch.tensor([float(f) for f in flags],
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def broadcast_flag(info: DistInfo, flag: bool) -> bool:
    """Rank 0's decision, on every rank (time budget checks read each rank's own clock)."""
    if not info.distributed:
        return bool(flag)
    t = torch.tensor([float(flag)], device=info.device if info.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def gather_objects(info: DistInfo, obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (per-rank RNG states)."""
    if not info.distributed:
        return [obj]
    parts = [None] * info.world_size
    dist.all_gather_object(parts, obj)
    return parts


def sum_values(info: DistInfo, values: list[float]) -> list[float]:
    """Sum of float values over ranks (train loss sums and sample counts)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def shard(n: int, info: DistInfo) -> list[int]:
    """This rank's share of range(n) for evaluation: every index on exactly one rank."""
    return list(range(info.rank, n, info.world_size))


def shard_batches(n: int, batch_size: int, info: DistInfo) -> list[list[int]]:
    """This rank's whole batches of range(n) for inference: batch k (indices k * batch_size
    onwards) goes to rank k % world. Every index is on exactly one rank, and every batch holds
    the films a single process would put together (a backbone's float rounding depends on its
    batch, so this keeps sharded outputs bit-identical)."""
    starts = range(0, n, batch_size)[info.rank::info.world_size]
    return [list(range(s, min(s + batch_size, n))) for s in starts]


def gather_to_main(info: DistInfo, obj) -> list | None:
    """[obj of rank 0, obj of rank 1, ...] on rank 0 and None on the others: results that
    only rank 0 writes."""
    if not info.distributed:
        return [obj]
    parts = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, parts, dst=0)
    return parts


@contextlib.contextmanager
def main_prints_only(info: DistInfo):
    """Silence stdout on ranks other than 0, so a torchrun command prints its lines once
    (stderr, where errors go, stays open on every rank)."""
    if info.is_main:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


@contextlib.contextmanager
def inference_session(preference: str = "auto"):
    """The DistInfo of one `cxr predict` / `cxr evaluate` process (a torchrun rank or the only
    process): the process group is set up, only rank 0 prints, and the group is torn down
    however the command ends."""
    info = setup(preference)
    try:
        with main_prints_only(info):
            yield info
    finally:
        teardown(info)


def gather_arrays(info: DistInfo, index: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Concatenate each rank's rows and sort them by `index` (dataset order); returns the
    arrays without the index. Every rank receives the full result."""
    if info.distributed:
        parts = [None] * info.world_size
        dist.all_gather_object(parts, (index, *arrays))
        index = np.concatenate([p[0] for p in parts])
        # a rank that scored no batch sends empty arrays whose other dimensions it may not know
        arrays = tuple(np.concatenate([p[i + 1] for p in parts if len(p[i + 1])]
                                      or [parts[0][i + 1]]) for i in range(len(arrays)))
    order = np.argsort(index, kind="stable")
    if len(np.unique(index)) != len(index):  # sharding bug guard: an image scored twice
        raise RuntimeError("gathered duplicate rows: an image was scored on two ranks")
    return tuple(a[order] for a in arrays)


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP syncs them only at
    the start of a training forward, so after an epoch each rank holds the statistics of its
    own last batches; validation and the checkpoint must all use one model: rank 0's."""
    if info.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP around the model for this phase's trainable parameters (re-wrap after freezing)."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=ids[0] if ids else None,
               find_unused_parameters=False)
