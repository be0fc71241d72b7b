"""Running under a launcher (``torchrun``, ``accelerate launch``, several nodes): which rank this
process is, the device and CPU threads it may use, and the few collectives the commands need.

Every launcher sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (and MASTER_ADDR and
MASTER_PORT, which `torch.distributed` reads itself); without them, or with WORLD_SIZE 1, a
command is one process, exactly as when no launcher is used. Work is split statically (a rank
takes a shard that it derives from its rank), so the collectives are only a status exchange
after the work — which doubles as the barrier before rank 0 writes the joined output — and a
gather of sampled texts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

#: How long a rank waits for the others at a collective. Ranks that finish their shard early wait
#: for the slowest there, so it is long; a rank that dies ends the job at once anyway (the
#: launcher stops the others, and gloo and NCCL notice a closed peer).
COLLECTIVE_TIMEOUT = timedelta(days=7)


class RankFailed(RuntimeError):
    """Another rank of the job failed: its own error is printed by that rank; exit 1."""


@dataclass(frozen=True)
class Launch:
    """This process's place in the job (rank 0 of 1 without a launcher)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int]:
        """The shard this rank labels: exactly ``--shard RANK/WORLD_SIZE``."""
        return self.rank, self.world_size

    def cpu_threads(self) -> int:
        """CPU threads per rank, so the ranks on one machine do not oversubscribe its cores."""
        return max(1, (os.cpu_count() or 1) // self.local_world_size)


def launch_env(environ: Mapping[str, str] | None = None) -> Launch:
    """The launcher's ranks from the environment; ValueError names a variable that is wrong."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return Launch()
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        default = {"LOCAL_RANK": env.get("RANK", "0"), "LOCAL_WORLD_SIZE": env["WORLD_SIZE"]}
        text = env.get(name, default.get(name, "0"))
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"launcher environment: {name}={text!r} is not a number") from None
    rank, world = values["RANK"], values["WORLD_SIZE"]
    local, local_world = values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"]
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"launcher environment: RANK={rank} is not in 0..WORLD_SIZE-1={world - 1}")
    if local_world < 1 or not 0 <= local < local_world:
        raise ValueError(
            f"launcher environment: LOCAL_RANK={local} is not in 0..LOCAL_WORLD_SIZE-1="
            f"{local_world - 1}"
        )
    return Launch(rank, world, local, local_world)


def pin_local_gpu(launch: Launch) -> None:
    """Make this rank's GPU (number LOCAL_RANK of those visible) its only visible one, as cuda:0.

    Called before anything touches CUDA. Every rank then loads its model on ``cuda:0`` — another
    physical GPU each — so the device recorded in its labels is the one a single-process run on
    ``cuda`` records, and the shards of one run on eight GPUs merge (and resume) as one run.
    A machine without GPUs is left as it is.
    """
    if launch.local_world_size == 1:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v for v in visible.split(",") if v.strip()] if visible else None
    if ids is not None and len(ids) == 1:
        return  # already pinned (by the launcher or the user)
    if ids is not None and launch.local_rank >= len(ids):
        raise ValueError(
            f"LOCAL_RANK {launch.local_rank}: CUDA_VISIBLE_DEVICES={visible} lists only "
            f"{len(ids)} GPU(s) for {launch.local_world_size} ranks on this machine"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[launch.local_rank] if ids else str(launch.local_rank)


@contextmanager
def process_group(launch: Launch) -> Iterator[None]:
    """The job's process group while the block runs (nothing without a launcher): gloo for the
    CPU tensors of the collectives here, with NCCL beside it for CUDA tensors when there is a
    GPU."""
    import torch.distributed as dist

    if not launch.distributed or dist.is_initialized():
        yield
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(
        backend=backend,
        rank=launch.rank,
        world_size=launch.world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def failed_ranks(failed: bool) -> list[int]:
    """Every rank says whether its work failed; all return the ranks that did (in order).

    The exchange is the barrier after the work: no rank passes it before all have finished, and
    a rank whose work raised still reaches it, so the others never wait for it in vain.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        return [0] if failed else []
    flags = torch.zeros(dist.get_world_size(), dtype=torch.int32)
    flags[dist.get_rank()] = int(failed)
    dist.all_reduce(flags)
    return [r for r, f in enumerate(flags.tolist()) if f]


def check_all_succeeded(error: BaseException | None) -> None:
    """After each rank's work: re-raise this rank's own error, or RankFailed when another's
    failed, or return when every rank succeeded (all ranks call it, or none)."""
    failed = failed_ranks(error is not None)
    if error is not None:
        raise error
    if failed:
        names = ", ".join(map(str, failed))
        raise RankFailed(f"rank(s) {names} failed (the error is printed above); nothing merged")


@contextmanager
def every_rank_succeeds() -> Iterator[None]:
    """Wrap each rank's own work: after it, the ranks exchange whether it failed, so none waits
    in vain at a later collective; this rank's error, or RankFailed, leaves the block."""
    error: Exception | None = None
    try:
        yield
    except Exception as exc:  # kept for the exchange, raised after it
        error = exc
    check_all_succeeded(error)


def same_on_all_ranks(value: Any, what: str) -> None:
    """Refuse (RankFailed, on every rank) a `what` that differs between ranks (their devices)."""
    values = gather_all(value)
    if any(v != values[0] for v in values):
        seen = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
        raise RankFailed(f"the ranks differ in {what} ({seen}); every rank must use the same")


def gather_all(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
