"""Issue 8's figures: the default main job (fine selection) against training every recalled candidate to the end.

    python benchmarks/select_default.py [--task image-classification] [--out runs/bench-select]

Runs `examples/select.py` twice on the same embedded default: once as shipped (fine selection), once with
`--policy brute-force` (every recalled candidate trained to the full budget). Phase 1 is the same in both (the proxy
scores come from the cache the first run filled). Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(task: str, out: Path, policy: str) -> dict:
    summary = out / f"{policy}.json"
    env = {**os.environ, "HF_TWOPHASE_SELECT_JSON": str(summary)}
    start = time.perf_counter()
    cmd = [sys.executable, str(ROOT / "examples" / "select.py"), "--task", task, "--policy", policy,
           "--output-dir", str(out / policy), "--overwrite"]
    subprocess.run(cmd, check=True, env=env)
    data = json.loads(summary.read_text())
    data["wall"] = time.perf_counter() - start
    data["report"] = json.loads((out / policy / "report.json").read_text())
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="image-classification")
    parser.add_argument("--out", default="runs/bench-select")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fs = run(args.task, out, "fine-selection")
    bf = run(args.task, out, "brute-force")
    metric = fs["report"]["metric"]
    budget = fs["report"]["budget"]
    finals = {c["name"]: c["curve"].get(str(budget)) for c in bf["report"]["candidates"] if c["curve"]}
    best = max(finals, key=lambda m: finals[m] if finals[m] is not None else -1)
    print(f"| run | winner | {metric} of the winner | training steps | wall time |")
    print("|---|---|---|---|---|")
    for name, data in (("fine selection (default)", fs), ("brute force on the recalled", bf)):
        print(f"| {name} | {data['winner']} | {data['winner_score']:.4f} | {data['steps_spent']} | "
              f"{data['wall']:.0f} s |")
    print()
    print(f"Full-budget {metric} of every recalled candidate: "
          + ", ".join(f"{m}: {v:.4f}" for m, v in sorted(finals.items(), key=lambda kv: -(kv[1] or 0))))
    print(f"Best candidate: {best} ({finals[best]:.4f}); fine selection's winner is "
          f"{100 * (finals[best] - fs['winner_score']):.2f} points below it.")


if __name__ == "__main__":
    main()
