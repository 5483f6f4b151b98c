"""`hf-twophase` command line: each sub-command is a thin shell over the library, with `--json` for scripts."""

from hf_twophase.cli.main import main

__all__ = ["main"]
