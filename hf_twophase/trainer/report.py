"""The selection report: every candidate's curve and fate, the cost spent, as JSON, Markdown and a plot.

Built from what training saw (the shared selection state and each Trainer's step count), so the card
of a selected model and the summary screen tell the same story.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from hf_twophase.atomic import write_json_atomic, write_text_atomic
from hf_twophase.method.policies import StageSchedule, SuccessiveHalving
from hf_twophase.method.scheduler import StageScheduler, play
from hf_twophase.paths import display_name

UNTRAINED = ("not-recalled", "skipped")  # listed but never trained: no part of what brute force would have cost



@dataclass
class CandidateReport:
    name: str
    status: str  # "winner" | "pruned" | "dropped" | "failed" | "not-recalled" | "skipped"
    reason: str = ""
    curve: dict[int, float] = field(default_factory=dict)
    steps_trained: int = 0
    seconds: float = 0.0
    stopped_at: int | None = None
    note: str = ""


RISING = 0.01  # a last-stage gain above one point of the metric is worth telling the user about


@dataclass
class SelectionReport:
    candidates: list[CandidateReport]
    winner: str | None
    budget: int
    stage_ends: list[int]
    metric: str
    policy: dict
    seconds: float = 0.0
    winner_score: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def steps_spent(self) -> int:
        return sum(c.steps_trained for c in self.candidates)

    @property
    def trained_candidates(self) -> list[str]:
        """The candidates that took part in phase 2 (not those left out by recall or skipped)."""
        return [c.name for c in self.candidates if c.status not in UNTRAINED]

    @property
    def brute_force_steps(self) -> int:
        return self.budget * len(self.trained_candidates)

    def context(self) -> list[str]:
        """What makes the winner's score meaningful: the majority class alone, the best other candidate, and whether
        the winner was still improving when the budget ran out (then more budget may buy a better model)."""
        lines = []
        baseline = self.extra.get("majority_baseline")
        if baseline is not None:
            lines.append(f"majority class alone: {self.metric} {baseline:.4f}")
        others = [(c.curve[max(c.curve)], max(c.curve), c.name) for c in self.candidates
                  if c.name != self.winner and c.curve and c.status not in UNTRAINED]
        if others:
            value, step, name = max(others)
            lines.append(f"best other candidate: {display_name(name)}, {self.metric} {value:.4f} at step {step}")
        winner = next((c for c in self.candidates if c.name == self.winner), None)
        if winner is not None and len(winner.curve) >= 2:
            (_, before), (_, last) = sorted(winner.curve.items())[-2:]
            if last - before > RISING:
                lines.append(f"the winner's {self.metric} still rose {100 * (last - before):.1f} points over its last "
                             f"stage: a larger budget (--budget {2 * self.budget}, or more epochs) may train a better "
                             "model")
        return lines

    def successive_halving_steps(self) -> int:
        """What successive halving would have trained on the same candidates and stage schedule."""
        names = self.trained_candidates
        if not names:
            return 0
        schedule = StageSchedule(self.policy.get("stage", self.stage_ends[0]), self.policy.get("growth", 1.0))
        run = StageScheduler(SuccessiveHalving(schedule), names, self.budget)
        order = {c: float(i) for i, c in enumerate(names)}
        return sum(play(run, lambda c, step: order[c]).values())  # SH's cost does not depend on the scores

    def to_dict(self) -> dict:
        out = asdict(self)
        out["steps_spent"] = self.steps_spent
        out["brute_force_steps"] = self.brute_force_steps
        out["successive_halving_steps"] = self.successive_halving_steps()
        for c in out["candidates"]:
            c["curve"] = {str(k): v for k, v in c["curve"].items()}
        return out

    def to_markdown(self) -> str:
        score = f" ({self.metric} {self.winner_score:.4f})" if self.winner_score is not None else ""
        lines = [
            f"**Winner: {display_name(self.winner)}**{score}",
            "",
            *[f"- {line}" for line in self.context()],
            "",
            f"Training steps spent: {self.steps_spent} (brute force: {self.brute_force_steps}, successive halving: "
            f"{self.successive_halving_steps()}); budget {self.budget} steps per candidate; stage ends "
            f"{', '.join(map(str, self.stage_ends[:8]))}{' ...' if len(self.stage_ends) > 8 else ''}.",
            "",
            f"| candidate | status | stopped at step | why | steps trained | {self.metric} at each stage end |",
            "|---|---|---|---|---|---|",
        ]
        for c in self.candidates:
            curve = ", ".join(f"{s}: {v:.4f}" for s, v in sorted(c.curve.items()))
            stopped = c.stopped_at if c.stopped_at is not None else "-"
            lines.append(f"| {display_name(c.name)} | {c.status} | {stopped} | "
                         f"{(c.reason + (' - ' + c.note if c.note else '')).replace('|', '/')} | {c.steps_trained} | "
                         f"{curve} |")
        if self.policy.get("note"):
            lines += ["", f"Policy note: {self.policy['note']} ({self.policy.get('policy')} ran)."]
        lines += self._phase1_markdown()
        return "\n".join(lines) + "\n"

    def _phase1_markdown(self) -> list[str]:
        """Phase 1's ranking: where each candidate came from, its prior, its proxy score and what that cost."""
        rows = self.extra.get("phase1", {}).get("candidates", [])
        lines = []
        if rows:
            lines += ["", "Phase 1 (coarse recall): " + self.extra["phase1"].get("note", ""), "",
                      "| model | from | prior (z) | proxy | proxy cost (s) | recall score | recalled |",
                      "|---|---|---|---|---|---|---|"]

            def num(value, digits=3):
                return "-" if value is None else f"{value:.{digits}f}"

            for r in rows:
                status = "yes" if r["recalled"] else (f"skipped: {r['skipped']}" if r.get("skipped") else "no")
                lines.append(f"| {display_name(r['model'])} | {r['origin']} | {num(r['prior'])} | "
                             f"{num(r['proxy'], 4)} | {num(r['proxy_seconds'], 1)} | {num(r['recall_score'])} | "
                             f"{status.replace('|', '/')} |")
        provenance = (self.extra.get("matrix") or {}).get("provenance")
        if provenance:
            from hf_twophase.records.published import describe_provenance

            lines += ["", f"Performance matrix: {describe_provenance(provenance)}"]
        return lines

    def plot(self, path: str | Path) -> Path:
        """Validation curves with the prune points marked.

        Drawn on a bare `Figure` with fixed margins: no pyplot state to leak between selections in one process,
        and no layout pass, which took about as long as drawing the curves.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.2))
        fig.subplots_adjust(left=0.1, right=0.98, top=0.92, bottom=0.12)
        ax = fig.add_subplot()
        for c in self.candidates:
            if not c.curve:
                continue
            steps, vals = zip(*sorted(c.curve.items()), strict=True)
            style = {"linewidth": 2.5} if c.status == "winner" else {"linewidth": 1.2, "alpha": 0.8}
            label = display_name(c.name)
            line, = ax.plot(steps, vals, marker="o", markersize=3, label=f"{label} ({c.status})", **style)
            if c.status in ("pruned", "dropped") and c.stopped_at in c.curve:
                ax.plot([c.stopped_at], [c.curve[c.stopped_at]], marker="x", markersize=9, markeredgewidth=1.5,
                        linestyle="none", color=line.get_color(), zorder=5)  # a marker, not a collection: cheaper
        ax.set_xlabel("training step")
        ax.set_ylabel(self.metric)
        if 1 < len(self.stage_ends) <= 12:  # ticks where the decisions were taken; also spares the tick search
            ax.set_xticks(self.stage_ends)
        ax.set_title("Fine selection: validation curves (x = pruned)", y=1.01)  # fixed: no overlap search
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        path = Path(path)
        fig.savefig(path, dpi=120, pil_kwargs={"compress_level": 1})  # zlib's fastest: a slightly larger file, sooner
        return path

    def save(self, folder: str | Path) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "report.json", self.to_dict(), indent=2)
        write_text_atomic(folder / "report.md", self.to_markdown())
        return {"json": folder / "report.json", "markdown": folder / "report.md",
                "plot": self.plot(folder / "curves.png")}
