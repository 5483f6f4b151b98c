"""How the embedded defaults' budget trades wall time for the winner's quality: the sweep the defaults are chosen from.

    python benchmarks/default_sweep.py --task image-classification --budgets 32 64 128 192 256 320
    python benchmarks/default_sweep.py --task text-classification --budgets 128 256 384 --max-train 2000
    python benchmarks/default_sweep.py --markdown image.jsonl text.jsonl    # the table of sweeps already run

For every budget (and training-set size), on one warm cache: the default selection (`python examples/select.py
--task T --budget B`) with its wall time and winner, and brute force (`--policy brute-force`), which trains every
recalled candidate to the same budget; the winner's regret is measured against the best of them. A cache warm-up run
comes first and is not counted. Each row is appended as one JSON line to `--out` as soon as it is measured, so a
long sweep can be read while it runs and nothing is lost if it stops.
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


def one_run(task: str, extra: list[str], work: Path, env: dict) -> tuple[float, dict, dict]:
    """(wall seconds, the --json summary, report.json) of one run of the main job."""
    out = work / f"run-{time.monotonic_ns()}"
    summary = out.with_suffix(".json")
    cmd = [sys.executable, str(ROOT / "examples" / "select.py"), "--task", task, "--output-dir", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, env={**env, "HF_TWOPHASE_SELECT_JSON": str(summary)},
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    return wall, json.loads(summary.read_text()), json.loads((out / "report.json").read_text())


def finals(report: dict) -> dict[str, float]:
    budget = str(report["budget"])
    return {Path(c["name"]).name: c["curve"][budget] for c in report["candidates"] if budget in c["curve"]}


def table(rows: list[dict]) -> str:
    """The sweep as the markdown table docs/benchmarks.md shows."""
    lines = ["| task | training examples | budget (steps) | steps spent | warm wall time | winner | best at the "
             "budget | regret | brute force wall time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['max_train'] or 'default'} | {r['budget']} | {r['steps_spent']} | "
                     f"{r['wall_s']:.0f} s | {r['winner']} ({r['winner_score']:.3f}) | {r['best_at_budget']:.3f} | "
                     f"{r['regret_pt']:.1f} pt | {r['brute_force_wall_s']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="image-classification")
    parser.add_argument("--budgets", type=int, nargs="+", default=[])
    parser.add_argument("--markdown", type=Path, nargs="+", default=None,
                        help="print the table of earlier sweeps' JSON lines instead of running one")
    parser.add_argument("--max-train", type=int, nargs="+", default=[None],
                        help="training-set sizes to sweep (default: the embedded default's)")
    parser.add_argument("--extra", default="", help="more arguments for every run, e.g. '--learning-rate 3e-4'")
    parser.add_argument("--out", type=Path, default=Path("default_sweep.jsonl"))
    args = parser.parse_args()
    if args.markdown:
        print(table([json.loads(line) for f in args.markdown for line in f.read_text().splitlines() if line]))
        return
    with tempfile.TemporaryDirectory(prefix="default-sweep-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "HF_TWOPHASE_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}
        one_run(args.task, ["--budget", "8"], work, env)  # warm the cache: derived models, datasets, weights
        for max_train in args.max_train:
            for budget in args.budgets:
                extra = ["--budget", str(budget), *args.extra.split()]
                if max_train:
                    extra += ["--max-train", str(max_train)]
                wall, summary, report = one_run(args.task, extra, work, env)
                bf_wall, _, bf_report = one_run(args.task, [*extra, "--policy", "brute-force"], work, env)
                best = finals(bf_report)
                row = {"task": args.task, "budget": budget, "max_train": max_train, "extra": args.extra,
                       "wall_s": round(wall, 1), "steps_spent": report["steps_spent"],
                       "winner": Path(summary["winner"]).name, "winner_score": summary["winner_score"],
                       "best_at_budget": max(best.values()), "regret_pt": round(100 * (max(best.values())
                                                                                       - summary["winner_score"]), 2),
                       "brute_force_wall_s": round(bf_wall, 1), "candidates_at_budget": best}
                print(json.dumps(row), flush=True)
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
