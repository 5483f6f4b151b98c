"""The embedded default in process against `--backend ray` on the same machine: wall time, winner, steps spent.

    python benchmarks/ray_backend.py [--task image-classification] [--cpus-per-candidate 1]

Both runs are `python examples/select.py --json` on one warm cache (a first, uncounted run fills it); the Ray run
starts a local Ray instance, which is part of its wall time. Prints one JSON object per run and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(task: str, extra: list[str], work: Path, env: dict, name: str) -> dict:
    cmd = [sys.executable, str(ROOT / "examples" / "select.py"), "--task", task, "--json", "--output-dir",
           str(work / name), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"run": name, "wall_s": round(wall, 1), "backend": summary["backend"], "workers": summary["workers"],
            "winner": Path(summary["winner"]).name, "winner_score": summary["winner_score"],
            "steps_spent": summary["steps_spent"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="image-classification")
    parser.add_argument("--cpus-per-candidate", default="1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray-backend-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "HF_TWOPHASE_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}
        run(args.task, ["--budget", "8"], work, env, "warm-up")
        rows = [run(args.task, [], work, env, "in process"),
                run(args.task, ["--backend", "ray", "--cpus-per-candidate", args.cpus_per_candidate], work, env,
                    "ray")]
    for row in rows:
        print(json.dumps(row))
    print("| run | wall time | candidates side by side | winner | steps spent |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['wall_s']:.0f} s | {r['workers']} | {r['winner']} ({r['winner_score']:.3f}) | "
              f"{r['steps_spent']} |")


if __name__ == "__main__":
    main()
