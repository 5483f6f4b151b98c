"""The main job's console: a line per phase and a progress bar per long phase on screen, everything else in a log.

Why: a newcomer judges a tool by its first screen. Trainer log dictionaries, library warnings the user cannot act on
(``pin_memory`` on a CPU, the expected "newly initialized" heads) and the progress bars of every file read hide what
is happening. They all still matter when something goes wrong, so they go to ``select.log`` in the output folder;
``--verbose`` shows them on screen as well.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

LOG_NAME = "select.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_INFO_LEVEL = ("transformers", "hf_twophase")  # the others keep their own level (torch's INFO is compiler chatter)
_LIBRARIES = ("transformers", "datasets", "huggingface_hub", "accelerate", "torch", "timm", "py.warnings",
              "hf_twophase")


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


@contextlib.contextmanager
def job_console(log_file: Path | None, *, verbose: bool = False) -> Iterator[None]:
    """Send library logs, warnings and their progress bars to ``log_file`` (and, with ``verbose``, to the screen too)
    for the duration of the job; restores every setting afterwards."""
    import datasets
    import huggingface_hub.utils as hub_utils
    import transformers

    handler = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
    # the libraries' own loggers, and every child logger that prints by itself (torch's do, with propagate off)
    names = set(_LIBRARIES) | {name for name in logging.root.manager.loggerDict
                               if name.split(".")[0] in _LIBRARIES and logging.getLogger(name).handlers}
    loggers = [logging.getLogger(name) for name in sorted(names)]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    tf_verbosity = transformers.logging.get_verbosity()
    tf_bars = transformers.utils.logging.is_progress_bar_enabled()
    ds_bars = datasets.utils.logging.is_progress_bar_enabled()
    hub_bars = not hub_utils.are_progress_bars_disabled()
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each warning once per place, into the log
            for lg in loggers:
                if lg.name.split(".")[0] in _INFO_LEVEL:  # what the Trainer and we report at INFO goes to the log
                    lg.setLevel(logging.INFO)
                if handler is not None:
                    lg.addHandler(handler)
                lg.propagate = False
                if verbose:
                    lg.addHandler(logging.StreamHandler())
            if not verbose:
                for lg in loggers:  # the libraries' own console handlers are set aside until the job ends
                    lg.handlers = [h for h in lg.handlers if h is handler or not _is_console(h)]
                transformers.utils.logging.disable_progress_bar()
                datasets.utils.logging.disable_progress_bar()
                hub_utils.disable_progress_bars()
            yield
    finally:
        logging.captureWarnings(False)
        for lg, level, propagate, handlers in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.handlers = handlers
        transformers.logging.set_verbosity(tf_verbosity)
        if tf_bars:
            transformers.utils.logging.enable_progress_bar()
        if ds_bars:
            datasets.utils.logging.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()
        if handler is not None:
            handler.close()
