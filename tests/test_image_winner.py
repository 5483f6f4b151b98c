"""An image winner loads the way its model card says: `pipeline("image-classification", model=...)` on the pushed
repository predicts with the accuracy the selection measured, and its files follow the user's umask."""

from __future__ import annotations

import os
import re
import uuid

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_image_winner_loads_with_the_cards_snippet_and_keeps_its_accuracy(tmp_path, local_hub):
    import timm
    import timm.models
    from huggingface_hub import ModelCard

    from hf_twophase.inputs.packaged import digits_dataset
    from hf_twophase.trainer.config import SelectionConfig
    from hf_twophase.trainer.coordinator import SelectionCoordinator
    from tests.coordinator_helpers import training_args

    digits = digits_dataset().shuffle(seed=0)
    train, validation = digits.select(range(96)), digits.select(range(96, 144))
    candidates = []
    for i, arch in enumerate(("test_efficientnet", "test_resnet")):
        folder = tmp_path / f"model-{i}"
        timm.models.save_for_hf(timm.create_model(arch, pretrained=False, num_classes=10), str(folder),
                                safe_serialization=True)
        candidates.append(f"local-dir:{folder}")
    old = os.umask(0o022)
    try:
        args = training_args(tmp_path / "sel", max_steps=40, learning_rate=3e-3)
        result = SelectionCoordinator(candidates, train, validation, args, SelectionConfig(stage_steps=10)).run()
    finally:
        os.umask(old)
    winner = tmp_path / "sel" / "winner"
    assert {p.name: p.stat().st_mode & 0o777 for p in winner.iterdir()} == {
        p.name: 0o644 for p in winner.iterdir()}  # the umask's permissions, not 0600

    repo_id = f"tests/image-winner-{uuid.uuid4().hex[:8]}"
    result.push_to_hub(repo_id, task="image-classification")
    card = ModelCard.load(repo_id).text
    snippet = re.search(r"```python\n(.*?)```", card, flags=re.S).group(1)
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the card's own usage snippet, exactly as printed
    classifier = scope["classifier"]
    names = validation.features["label"].names
    predicted = [out[0]["label"] for out in classifier(list(validation["image"]), top_k=1)]
    accuracy = float(np.mean([p == names[y] for p, y in zip(predicted, validation["label"], strict=True)]))
    assert result.report.winner_score > 0.2  # well above chance (0.1): a label mix-up would show
    assert abs(accuracy - result.report.winner_score) <= 2 / len(validation), (accuracy, result.report.winner_score)
