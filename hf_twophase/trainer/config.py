"""`SelectionConfig`: how a phase-2 selection runs, in one dataclass beside the Trainer's own `TrainingArguments`.

The `TrainingArguments` template says how each candidate trains (its `max_steps` or `num_train_epochs` is the budget
of every candidate); this says how they are compared, paused, checkpointed and loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BACKENDS = ("local", "ray")  # where phase 2's candidates train


@dataclass
class SelectionConfig:
    """Settings of one selection among candidates (`SelectionCoordinator`, `RepoSelector.select`)."""

    stage_steps: int | None = field(default=None, metadata={
        "help": "Steps of the first stage when no policy is given (default: a quarter of the budget)."})
    growth: float = field(default=1.0, metadata={"help": "Each stage this many times longer than the one before."})
    metric: str = field(default="eval_accuracy", metadata={
        "help": "The evaluation metric that decides (the built-in accuracy computes eval_accuracy)."})
    greater_is_better: bool = field(default=True, metadata={"help": "Whether a larger metric is better."})
    label_column: str | None = field(default=None, metadata={"help": "The label column (default: detected)."})
    text_column: str | None = field(default=None, metadata={"help": "The text column (default: detected)."})
    text_pair_column: str | None = field(default=None, metadata={"help": "A second text column, for pairs."})
    image_column: str | None = field(default=None, metadata={"help": "The image column (default: detected)."})
    save_stages: bool = field(default=True, metadata={
        "help": "Checkpoint live candidates at every stage end: what a resume after a crash needs."})
    background_checkpoints: bool | None = field(default=None, metadata={
        "help": "Write stage checkpoints on a worker thread while training goes on; None: only when training runs "
                "on an accelerator (on the CPU a writer thread competes with training)."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run code that ships with a Hub model. Off unless you trust every candidate."})
    allow_pickle: bool = field(default=False, metadata={
        "help": "Load pickled weights (.bin, .pth) when a candidate has no safetensors. Pickles can run code."})
    max_length: int = field(default=256, metadata={"help": "The longest tokenized text, in tokens."})
    image_size: int | None = field(default=None, metadata={
        "help": "Input resolution of timm candidates (default: their own pre-training resolution)."})
    progress: bool = field(default=False, metadata={"help": "Show one progress bar for the whole selection."})
    backend: str = field(default="local", metadata={
        "help": "'local': the candidates take turns in this job (every process of torchrun / accelerate launch "
                "trains each one data-parallel); 'ray': each candidate is a Ray Tune trial with its own resources, "
                "side by side (pip install 'hf-twophase[ray]')."})
    ray_address: str | None = field(default=None, metadata={
        "help": "The Ray cluster to join ('auto': the one this machine belongs to); None: start Ray locally."})
    cpus_per_candidate: float = field(default=1.0, metadata={"help": "CPUs each Ray trial reserves."})
    gpus_per_candidate: float = field(default=0.0, metadata={
        "help": "GPUs each Ray trial reserves (a fraction shares one GPU between candidates)."})
    max_failures: int = field(default=2, metadata={
        "help": "Ray: how many times a candidate whose worker died restarts from its last stage checkpoint."})

    def __post_init__(self) -> None:
        if self.stage_steps is not None and self.stage_steps < 1:
            raise ValueError(f"stage_steps must be >= 1, got {self.stage_steps}")
        if self.growth < 1.0:
            raise ValueError(f"growth must be >= 1, got {self.growth}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.cpus_per_candidate <= 0 or self.gpus_per_candidate < 0 or self.max_failures < 0:
            raise ValueError("cpus_per_candidate must be > 0, gpus_per_candidate and max_failures >= 0; got "
                             f"{self.cpus_per_candidate}, {self.gpus_per_candidate}, {self.max_failures}")

    def column_names(self) -> dict[str, str]:
        """The columns the user named, as `detect_columns` keywords."""
        given = {"label_column": self.label_column, "text_column": self.text_column,
                 "text_pair_column": self.text_pair_column, "image_column": self.image_column}
        return {k: v for k, v in given.items() if v}
