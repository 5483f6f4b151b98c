"""How a hyper-parameter search names its trials and what their reports carry, shared by `CheckpointSearch`, its
Optuna pruner and its Ray Tune scheduler."""

CHECKPOINT = "checkpoint"  # the hp_space key that names a trial's pre-trained checkpoint
STEP_KEY = "hf_twophase_step"  # added to a stage end's metrics: the optimizer step a Ray report was taken at


def trial_name(index: int) -> str:
    """The scheduler's name of a search's ``index``-th trial (Optuna's trial number; Ray's order of creation)."""
    return f"trial-{index}"
