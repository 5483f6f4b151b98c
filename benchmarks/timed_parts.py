"""Wall time per labelled piece of work, for the coordinator benchmarks: wrap methods, read the counter."""

from __future__ import annotations

import collections
import functools
import inspect
import time

PARTS: collections.Counter = collections.Counter()


def time_parts(pieces: list[tuple[type, str, str]]) -> None:
    """Wrap each `(owner, method, label)` so that every call adds its wall time to `PARTS[label]`."""
    for owner, name, label in pieces:
        static = isinstance(inspect.getattr_static(owner, name), staticmethod)
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*a, _original=original, _label=label, **k):
            start = time.perf_counter()
            try:
                return _original(*a, **k)
            finally:
                PARTS[_label] += time.perf_counter() - start

        setattr(owner, name, staticmethod(timed) if static else timed)
