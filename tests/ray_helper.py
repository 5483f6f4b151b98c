"""A tiny selection on the Ray backend (or in process), as a user's driver script runs it; the Ray tests start it in a
process of its own, so that it can be killed and resumed.

    python tests/ray_helper.py MODELS OUT {local,ray} [--resume]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hf_twophase.trainer.config import SelectionConfig  # noqa: E402
from hf_twophase.trainer.coordinator import SelectionCoordinator  # noqa: E402
from tests.coordinator_helpers import make_candidates, make_data, training_args  # noqa: E402

BUDGET, STAGE = 8, 4

if __name__ == "__main__":
    models, out, backend = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    names = make_candidates(models)[:3]
    config = SelectionConfig(stage_steps=STAGE, backend=backend, cpus_per_candidate=1.0)
    result = SelectionCoordinator(names, make_data(256, 0), make_data(64, 1), training_args(out, max_steps=BUDGET),
                                  config).run(resume="--resume" in sys.argv)
    summary = {"winner": result.winner, "steps": result.report.steps_spent, "workers": result.workers,
               "decisions": {Path(c.name).name: [c.status, c.stopped_at, c.steps_trained]
                             for c in result.report.candidates},
               "curves": {Path(c.name).name: c.curve for c in result.report.candidates}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
