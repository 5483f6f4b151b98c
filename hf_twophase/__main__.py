"""`python -m hf_twophase` runs the command line."""

import sys

from hf_twophase.cli.main import main

sys.exit(main())
