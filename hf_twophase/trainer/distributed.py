"""The few collective operations fine selection needs across the ranks of one job (torchrun, accelerate launch).

Every rank must prune alike, or the ranks deadlock in their next collective (transformers #18609): so rank 0
decides and the others receive its decision.
"""

from __future__ import annotations

import os
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


# what torchrun and accelerate launch tell a process about the job it belongs to
_JOB_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                  "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


def single_process_env() -> dict[str, str]:
    """This process's environment without the variables that make a child join the job's process group.

    Work that only one rank does (deriving a model, building a repository) must not run in the job's process group:
    its Trainer would call collectives that the other ranks, waiting at a barrier, answer out of turn, and the ranks
    would deadlock later. It runs in a child process of its own instead."""
    return {k: v for k, v in os.environ.items()
            if k not in _JOB_VARIABLES and not k.startswith(("TORCHELASTIC_", "ACCELERATE_", "TORCH_NCCL_"))}
