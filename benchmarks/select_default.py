"""The main job's defaults as a newcomer meets them: a fresh-cache run, a warm run, and brute force on the same
candidates, for the image and the text default; wall time and peak memory of each.

    python benchmarks/select_default.py [--tasks image-classification text-classification] [--write]

Each run is `python examples/select.py [--task TASK]` in a fresh folder, with `HF_TWOPHASE_CACHE` pointing at a new,
empty cache for the fresh run and at the same cache for the warm run. Brute force (`--policy brute-force`) trains
every recalled candidate to the full budget on the warm cache: the regret of the default's winner is measured against
the best of them. Peak memory is the largest resident set of the job's process (`getrusage` of the waited child).
With `--write`, the table replaces the section between the markers in docs/benchmarks.md, and the fresh image run's
summary screen replaces the example output in README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- select-default:start -->", "<!-- select-default:end -->"
README_START, README_END = "<!-- select-output:start -->", "<!-- select-output:end -->"


def measured(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, peak resident GiB, the finished process) of one job, run in a wrapper process of its own so
    that getrusage sees only this job."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "sys.stdout.write(json.dumps({'wall': time.perf_counter() - t, 'rc': p.returncode, 'out': p.stdout, "
               "'err': p.stderr[-4000:], 'kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result['err']}")
    return result["wall"], result["kb"] / 2**20, subprocess.CompletedProcess(cmd, 0, result["out"], result["err"])


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    return (f"{os.cpu_count()} CPU cores ({cpu}), {memory:.0f} GiB, no GPU used, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def run_task(task: str, work: Path) -> dict:
    cache = work / "cache"
    env = {**os.environ, "HF_TWOPHASE_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    base = [sys.executable, str(ROOT / "examples" / "select.py"), "--task", task]
    out: dict = {"task": task}
    for name, extra in (("fresh", []), ("warm", ["--output-dir", "runs/warm"]),  # fresh: the default folder
                        ("brute force", ["--output-dir", "runs/bf", "--policy", "brute-force"])):
        summary = work / f"{name.replace(' ', '-')}.json"
        wall, peak, done = measured([*base, *extra], work, {**env, "HF_TWOPHASE_SELECT_JSON": str(summary)})
        out[name] = {"wall": wall, "peak_gib": peak, "summary": json.loads(summary.read_text()),
                     "screen": done.stdout}
        print(f"{task} {name}: {wall:.0f} s, peak {peak:.2f} GiB", flush=True)
    report = json.loads((work / "runs" / "bf" / "report.json").read_text())
    finals = {c["name"]: c["curve"][str(report["budget"])] for c in report["candidates"]
              if str(report["budget"]) in c["curve"]}
    out["brute_force_best"] = max(finals.values())
    out["regret"] = 100 * (out["brute_force_best"] - out["fresh"]["summary"]["winner_score"])
    return out


def table(results: list[dict], host: str) -> str:
    lines = [f"Machine: {host}.", "",
             "| default | fresh cache: wall time | peak memory | warm cache: wall time | peak memory | winner "
             "(validation accuracy) | brute force on the same candidates | regret |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        fresh, warm = r["fresh"], r["warm"]
        winner = Path(fresh["summary"]["winner"]).name
        lines.append(f"| {r['task']} | {fresh['wall'] / 60:.1f} min | {fresh['peak_gib']:.2f} GiB | "
                     f"{warm['wall'] / 60:.1f} min | {warm['peak_gib']:.2f} GiB | {winner} "
                     f"({fresh['summary']['winner_score']:.3f}) | best {r['brute_force_best']:.3f} | "
                     f"{r['regret']:.2f} pt |")
    return "\n".join(lines)


def replace_between(path: Path, start: str, end: str, body: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {start} ... {end} markers")
    path.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["image-classification", "text-classification"])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and README.md")
    args = parser.parse_args()
    host = machine()
    results = []
    for task in args.tasks:
        with tempfile.TemporaryDirectory(prefix="select-default-") as tmp:
            results.append(run_task(task, Path(tmp)))
    text = table(results, host)
    print(text)
    if args.write:
        replace_between(ROOT / "docs" / "benchmarks.md", START, END, text)
        image = next((r for r in results if r["task"] == "image-classification"), None)
        if image is not None:
            screen = image["fresh"]["screen"].strip()
            replace_between(ROOT / "README.md", README_START, README_END, f"```text\n{screen}\n```")


if __name__ == "__main__":
    main()
