"""Phase 2 on W workers, replayed on recorded learning curves: how long a selection of K candidates takes when they
train side by side, how much of the workers' time the synchronous stage barrier leaves idle, and at what regret.

For every target with at least K models, R random sets of K candidates (seeded) are selected three ways, each with
the main job's stage schedule (a quarter of the budget per stage), charging each training segment its recorded cost:

- successive halving and calibrated halving (the shipped default), synchronous: every candidate still in the
  selection trains its stage, and the stage's decision waits for the slowest of them (the barrier). The stage's
  jobs go to the W workers longest first; a worker with nothing left in the stage waits.
- an asynchronous rule in the style of ASHA (Li et al., 2020), with the same stage ends as rungs and eta = 2: a free
  worker promotes a candidate that is in the top half of those reported so far at its rung (highest rung first), or
  starts a new candidate; it never waits for a stage to end. The winner is the best at the highest rung reached.

Brute force trains every candidate to the budget on the same W workers (longest first). Makespan speedup = brute
force's makespan / the policy's; idle = the share of W x makespan in which a worker had nothing to do; regret = the
best final score among the K minus the winner's, in points. The policies run at their shipped settings (nothing is
tuned here), so every figure is held out.

    python benchmarks/makespan.py --records $RECORDS/quicktune_curves_dev.csv [--k 8 16] [--workers 1 2 4 8]
        [--repeats 5] [--seed 0] [--out F.md] [--json F.json]
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics

from report_io import emit

from hf_twophase import PerformanceMatrix
from hf_twophase.method.registry import default_stage, make_policy
from hf_twophase.method.scheduler import StageScheduler, play
from hf_twophase.method.trends import benchmark_curves
from hf_twophase.records.curves import CurveCube

ETA = 2


def lpt(durations: list[float], workers: int) -> float:
    """Makespan of independent jobs on ``workers`` machines, longest job first to the least loaded machine."""
    loads = [0.0] * workers  # a heap: the least loaded machine first
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def segment(cube: CurveCube, model: str, target: str, start: int, end: int) -> float:
    return cube.cost_until(model, target, end) - (cube.cost_until(model, target, start) if start else 0.0)


def synchronous(cube, target, candidates, budget, policy, workers) -> tuple[str, float, float]:
    """(winner, makespan, busy time) of a stage-synchronous selection."""
    run = StageScheduler(policy, candidates, budget)
    reached = play(run, lambda m, step: cube.val_at(m, target, step))
    ends = sorted({*policy.schedule.ends(budget), budget})
    makespan = busy = 0.0
    previous = 0
    for end in ends:  # the jobs of one stage, then the barrier
        jobs = [segment(cube, m, target, previous, end) for m, r in reached.items() if r >= end]
        if jobs:
            makespan += lpt(jobs, workers)
            busy += sum(jobs)
        previous = end
    return run.winner, makespan, busy


def asynchronous(cube, target, candidates, budget, stage, workers) -> tuple[str, float, float]:
    """(winner, makespan, busy time) of ASHA with the stage ends as rungs."""
    rungs = sorted({*range(stage, budget, stage), budget})
    reported: list[dict[str, float]] = [{} for _ in rungs]
    promoted: list[set[str]] = [set() for _ in rungs]
    waiting = list(candidates)
    running: list[tuple[float, int, str, int]] = []  # (finish time, tie-break, candidate, rung it reaches)
    now = busy = 0.0
    order = 0

    def next_job() -> tuple[str, int] | None:
        for r in range(len(rungs) - 2, -1, -1):  # promote from the highest rung first
            best = sorted(reported[r], key=lambda m: (-reported[r][m], m))[: len(reported[r]) // ETA]
            for m in best:
                if m not in promoted[r]:
                    promoted[r].add(m)
                    return m, r + 1
        return (waiting.pop(0), 0) if waiting else None

    free = workers
    while True:
        while free:
            job = next_job()
            if job is None:
                break
            m, r = job
            duration = segment(cube, m, target, rungs[r - 1] if r else 0, rungs[r])
            busy += duration
            order += 1
            heapq.heappush(running, (now + duration, order, m, r))
            free -= 1
        if not running:
            break
        now, _, m, r = heapq.heappop(running)
        reported[r][m] = cube.val_at(m, target, rungs[r])
        free += 1
    top = max(r for r in range(len(rungs)) if reported[r])
    winner = max(reported[top], key=lambda m: (reported[top][m], m))
    return winner, now, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True)
    parser.add_argument("--k", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    cube = CurveCube(PerformanceMatrix.read(args.records))
    rows, raw = [], []
    for k in args.k:
        draws = []
        rng = random.Random(args.seed)
        for target in cube.datasets:
            models = sorted(cube.models_on(target))
            if len(models) >= k:
                draws += [(target, sorted(rng.sample(models, k))) for _ in range(args.repeats)]
        if not draws:
            continue
        for w in args.workers:
            outcome: dict[str, list[tuple[float, float, float]]] = {}
            for target, subset in draws:
                budget = max(cube.last_step(m, target) for m in subset)
                stage = default_stage(budget)
                truth = {m: cube.final_of(m, target) for m in subset}
                best = max(truth.values())
                full = [segment(cube, m, target, 0, budget) for m in subset]
                brute = lpt(full, w)
                curves = lambda m, target=target: benchmark_curves(cube, m, exclude=target)  # noqa: E731
                runs = {
                    "successive halving": synchronous(cube, target, subset, budget,
                                                      make_policy("successive-halving", stage=stage), w),
                    "calibrated halving": synchronous(cube, target, subset, budget,
                                                      make_policy("fine-selection", stage=stage, curves=curves), w),
                    "asynchronous (ASHA, eta 2)": asynchronous(cube, target, subset, budget, stage, w),
                }
                for name, (winner, makespan, busy) in runs.items():
                    idle = max(0.0, 1 - busy / (w * makespan)) if makespan > 0 else 0.0
                    outcome.setdefault(name, []).append((brute / makespan, idle, 100 * (best - truth[winner])))
                    raw.append({"k": k, "workers": w, "target": target, "policy": name, "speedup": brute / makespan,
                                "idle": idle, "regret": 100 * (best - truth[winner])})
            for name, values in outcome.items():
                rows.append(f"| {k} | {w} | {name} | {statistics.median(v[0] for v in values):.2f}x | "
                            f"{statistics.mean(v[1] for v in values):.0%} | "
                            f"{statistics.mean(v[2] for v in values):.2f} pt | {len(values)} |")
    text = "\n".join([
        "| K | workers | policy | median makespan speedup vs brute force | mean idle | mean regret | selections |",
        "|---|---|---|---|---|---|---|", *rows])
    emit(text, args.out, args.json, {"runs": raw})


if __name__ == "__main__":
    main()
