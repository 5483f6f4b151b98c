"""LEEP (Nguyen et al., ICML 2020) in log space, streamed over batches.

LEEP = (1/n) sum_i log sum_z P(y_i | z) theta_i(z), where theta_i is the source model's distribution
over its own labels z for sample i, and P(y | z) is the empirical conditional built from the joint
P(y, z) = (1/n) sum_{i: y_i = y} theta_i(z).

Everything is kept as logarithms (log-softmax outputs, log-sum-exp reductions), so a source label with
a probability of 1e-40 neither underflows to 0 nor turns the score into -inf. The joint needs every
sample before any conditional is known, so scoring takes two passes over the log-probabilities:
`update_joint` on every batch, then `score` on every batch. The caller either keeps the
log-probabilities (small source label spaces) or recomputes them (a masked-LM vocabulary), so memory
never grows with n x |Z|.
"""

from __future__ import annotations

import math

import torch


class LEEPAccumulator:
    """Two-pass streaming LEEP over batches of source log-probabilities (n_batch x |Z|) and target labels."""

    def __init__(self, n_target_classes: int, n_source_labels: int, device: torch.device | str = "cpu"):
        if n_target_classes < 1 or n_source_labels < 1:
            raise ValueError("LEEP needs at least one target class and one source label")
        self.n_target_classes = n_target_classes
        self.n_source_labels = n_source_labels
        self.log_joint = torch.full((n_target_classes, n_source_labels), -math.inf, dtype=torch.float64,
                                    device=device)
        self.n = 0
        self._log_conditional: torch.Tensor | None = None
        self._total = torch.zeros((), dtype=torch.float64, device=device)
        self._scored = 0

    def update_joint(self, log_theta: torch.Tensor, labels: torch.Tensor) -> None:
        """Pass 1: add a batch to the (unnormalised) joint, log sum_{i: y_i = y} theta_i(z)."""
        if self._log_conditional is not None:
            raise RuntimeError("the joint is final once scoring has started")
        log_theta = log_theta.to(self.log_joint.device, torch.float64)
        labels = labels.to(self.log_joint.device)
        # per-class log-sum-exp by scatter, with a per-(class, label) shift: no Python loop over classes and no
        # host-device synchronisation, so the accelerator never waits for this bookkeeping
        index = labels.view(-1, 1).expand_as(log_theta)
        shift = torch.full_like(self.log_joint, -math.inf).scatter_reduce_(0, index, log_theta, "amax")
        safe = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        sums = torch.zeros_like(self.log_joint).index_add_(0, labels, torch.exp(log_theta - safe[labels]))
        self.log_joint = torch.logaddexp(self.log_joint, torch.log(sums) + safe)
        self.n += int(labels.numel())

    def _conditional(self) -> torch.Tensor:
        if self._log_conditional is None:
            if self.n == 0:
                raise RuntimeError("no samples were added to the joint")
            # P(y | z) = P(y, z) / sum_y' P(y', z); the 1/n factors cancel. A class absent from the sample
            # keeps log P = -inf and is simply never a y_i.
            self._log_conditional = self.log_joint - torch.logsumexp(self.log_joint, dim=0, keepdim=True)
        return self._log_conditional

    def score(self, log_theta: torch.Tensor, labels: torch.Tensor) -> None:
        """Pass 2: add sum_i log sum_z P(y_i | z) theta_i(z) for a batch."""
        cond = self._conditional()
        log_theta = log_theta.to(cond.device, torch.float64)
        labels = labels.to(cond.device)
        per_sample = torch.logsumexp(cond[labels] + log_theta, dim=1)
        self._total += per_sample.sum()
        self._scored += int(labels.numel())

    def result(self) -> float:
        if self._scored != self.n:
            raise RuntimeError(f"scored {self._scored} samples but the joint holds {self.n}: run both passes fully")
        return float(self._total / self.n)


def leep(log_theta: torch.Tensor, labels: torch.Tensor, n_target_classes: int | None = None) -> float:
    """LEEP of in-memory source log-probabilities (n x |Z|) and integer target labels (n)."""
    labels = torch.as_tensor(labels)
    n_classes = int(labels.max()) + 1 if n_target_classes is None else n_target_classes
    acc = LEEPAccumulator(n_classes, log_theta.shape[1], device=log_theta.device)
    acc.update_joint(log_theta, labels)
    acc.score(log_theta, labels)
    return acc.result()
