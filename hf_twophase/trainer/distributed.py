"""The few collective operations fine selection needs across the ranks of one job (torchrun, accelerate launch).

Every rank must prune alike, or the ranks deadlock in their next collective (transformers #18609): so rank 0
decides and the others receive its decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def process_state(use_cpu: bool = False):
    """accelerate's view of this job's processes. Under torchrun or ``accelerate launch --multi_gpu`` on a machine
    without an accelerator, ``PartialState()`` alone sees one process per rank (it joins a CPU process group only
    when told it runs on the CPU), and every rank would run its own selection; so the CPU is named whenever training
    runs there."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu or not has_accelerator())


def has_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def several_ranks() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def from_rank_zero(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result on every rank; a plain call when the job has one process."""
    if not several_ranks():
        return compute()
    box = [compute() if torch.distributed.get_rank() == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
