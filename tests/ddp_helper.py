"""One rank of the 2-process (gloo, CPU) coordinator test: `torchrun --nproc_per_node 2 tests/ddp_helper.py OUT`."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hf_twophase.trainer.config import SelectionConfig  # noqa: E402
from hf_twophase.trainer.coordinator import SelectionCoordinator  # noqa: E402
from tests.coordinator_helpers import make_candidates, make_data, training_args  # noqa: E402

if __name__ == "__main__":
    import torch.distributed as dist

    out = Path(sys.argv[1])
    names = make_candidates(Path(sys.argv[2]))[:3]
    args = training_args(out / "selection", max_steps=30, ddp_backend="gloo")
    result = SelectionCoordinator(names, make_data(256, 0), make_data(64, 1), args,
                                  config=SelectionConfig(stage_steps=10)).run()
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    summary = {"rank": rank, "world": world, "winner": result.winner,
               "decisions": [(c.name, c.status, c.stopped_at, c.steps_trained) for c in result.report.candidates]}
    (out / f"rank{rank}.json").write_text(json.dumps(summary))
    if dist.is_initialized():  # end cleanly on every rank
        dist.barrier()
        dist.destroy_process_group()
