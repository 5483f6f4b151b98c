"""The tasks hf-twophase selects models for, named as the Hub's pipeline tags, and the one check of a task name."""

from __future__ import annotations

from hf_twophase.errors import SelectionError

TASKS = ("image-classification", "text-classification")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise SelectionError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task
