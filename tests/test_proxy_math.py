import math

import numpy as np
import pytest
import torch

from hf_twophase.proxy import LEEPAccumulator, leep, logme


def _loop_leep(theta: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """The formula of Nguyen et al. written as plainly as possible."""
    n, n_z = theta.shape
    joint = np.zeros((n_classes, n_z))
    for i in range(n):
        for z in range(n_z):
            joint[y[i], z] += theta[i, z] / n
    total = 0.0
    for i in range(n):
        s = 0.0
        for z in range(n_z):
            marginal = sum(joint[yy, z] for yy in range(n_classes))
            s += joint[y[i], z] / marginal * theta[i, z]
        total += math.log(s)
    return total / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leep_matches_loop_formula(seed):
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(60, 6)) * 2.0)
    y = rng.integers(0, 4, size=60)
    theta = torch.softmax(logits, dim=1).numpy()
    assert leep(torch.log_softmax(logits, 1), torch.tensor(y), 4) == pytest.approx(_loop_leep(theta, y, 4), abs=1e-6)


def test_streaming_two_passes_equal_in_memory():
    rng = np.random.default_rng(3)
    log_theta = torch.log_softmax(torch.tensor(rng.normal(size=(101, 9))), 1)
    y = torch.tensor(rng.integers(0, 3, size=101))
    acc = LEEPAccumulator(3, 9)
    for part in torch.split(torch.arange(101), 17):
        acc.update_joint(log_theta[part], y[part])
    for part in torch.split(torch.arange(101), 23):  # other batch boundaries in pass 2
        acc.score(log_theta[part], y[part])
    assert acc.result() == pytest.approx(leep(log_theta, y, 3), abs=1e-12)


def test_tiny_probabilities_and_absent_class_stay_finite():
    log_theta = torch.tensor([[0.0, -1000.0, -2000.0], [-1000.0, 0.0, -3000.0], [-5.0, -0.01, -800.0]])
    y = torch.tensor([0, 1, 1])
    value = leep(log_theta, y, n_target_classes=5)  # classes 2..4 never occur
    assert math.isfinite(value) and value <= 0
    perfect = leep(torch.log(torch.eye(3).clamp(min=1e-300)), torch.tensor([0, 1, 2]))
    assert perfect == pytest.approx(0.0, abs=1e-9)


def test_accumulator_misuse():
    acc = LEEPAccumulator(2, 2)
    with pytest.raises(RuntimeError, match="no samples"):
        acc.score(torch.zeros(1, 2), torch.tensor([0]))
    acc.update_joint(torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([0]))
    with pytest.raises(RuntimeError, match="both passes"):
        acc.result()


def _direct_evidence(f, y, alpha, beta):
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    res = y - f @ m
    return (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi) - beta / 2 * res @ res
            - alpha / 2 * m @ m - np.linalg.slogdet(a)[1] / 2) / n


@pytest.mark.parametrize("shape", [(80, 5), (20, 40)])  # more samples than features, and fewer
def test_logme_is_the_maximised_evidence(shape):
    rng = np.random.default_rng(4)
    f = rng.normal(size=shape)
    labels = (f[:, 0] + 0.5 * rng.normal(size=shape[0]) > 0).astype(int)
    score = logme(f, labels)
    # the evidence at any other (alpha, beta) is lower: LogME is its maximum, averaged over both classes
    for alpha, beta in [(1.0, 1.0), (0.1, 5.0), (10.0, 0.5)]:
        direct = np.mean([_direct_evidence(f, (labels == k).astype(float), alpha, beta) for k in (0, 1)])
        assert direct <= score + 1e-9
    if shape[0] > shape[1]:  # with enough samples, informative features beat random ones
        assert score > logme(rng.normal(size=shape), labels)


def _clusters(separation: float, seed: int = 0, n: int = 240, classes: int = 4, dims: int = 24):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    centres = rng.normal(size=(classes, dims)) * separation
    return centres[labels] + rng.normal(size=(n, dims)), labels


@pytest.mark.parametrize("name", ["logme", "knn", "hscore", "gbc"])
def test_feature_scores_rank_separable_classes_above_overlapping_ones(name):
    from hf_twophase.proxy import FEATURE_SCORES

    score = FEATURE_SCORES[name]
    ranked = [score(*_clusters(s)) for s in (0.0, 0.5, 3.0)]
    assert ranked[0] < ranked[1] < ranked[2]


def test_feature_scores_by_hand_and_on_bad_input():
    from hf_twophase.proxy import FEATURE_SCORES, gbc, h_score, knn_accuracy
    from hf_twophase.proxy.feature_scores import SET_SCORES
    from hf_twophase.proxy_names import PROXY_METHODS

    assert PROXY_METHODS == ("leep", *FEATURE_SCORES, *SET_SCORES)  # one list of names; the command line's is light
    features, labels = _clusters(3.0)
    assert knn_accuracy(features, labels) == 1.0
    assert knn_accuracy(features * 7.0, labels) == 1.0  # cosine neighbours: the scale does not matter
    assert gbc(features, labels) <= 0.0 and gbc(*_clusters(0.0)) < gbc(features, labels)
    assert h_score(features, labels) == pytest.approx(h_score(features + 5.0, labels))  # centring
    for bad in [(features, labels[:-1]), (features, np.zeros(len(labels))), (np.full_like(features, np.nan), labels),
                (features[0], labels[:1])]:
        for name, score in FEATURE_SCORES.items():
            if name == "logme" and len(np.unique(bad[1])) == 1 and len(bad[1]) == len(bad[0]):
                continue  # LogME is an evidence per class, defined for one class too
            with pytest.raises(ValueError):
                score(*bad)


def test_ncti_ranks_separable_classes_above_overlapping_ones_among_candidates():
    from hf_twophase.proxy.feature_scores import ncti_combine, ncti_terms

    terms = {f"sep{s}": ncti_terms(*_clusters(s)) for s in (0.0, 0.5, 3.0)}
    assert terms["sep0.0"].ncc < terms["sep0.5"].ncc <= terms["sep3.0"].ncc
    assert terms["sep0.0"].seli < terms["sep0.5"].seli < terms["sep3.0"].seli
    scores = ncti_combine(terms)
    # the separated classes win; between the other two the within-class term decides (posteriors that vary within a
    # class cost more than uniform ones), as the published score has it
    assert scores["sep3.0"] > max(scores["sep0.0"], scores["sep0.5"]) + 1.0
    assert all(-1.0 <= v <= 2.0 for v in scores.values())
    assert ncti_combine({"alone": terms["sep3.0"]}) == {"alone": 0.0}  # no other candidate: nothing to scale by
    assert ncti_combine({}) == {}
    features, labels = _clusters(3.0)
    for bad in [(features, labels[:-1]), (features, np.zeros(len(labels))), (np.full_like(features, np.nan), labels)]:
        with pytest.raises(ValueError):
            ncti_terms(*bad)


def test_ncti_combine_by_hand():
    """SELI and NCC min-max scaled over the candidates, added; VC scaled the same way, subtracted."""
    from hf_twophase.proxy.feature_scores import NCTITerms, ncti_combine

    terms = {"a": NCTITerms(seli=1.0, ncc=0.5, vc=2.0), "b": {"seli": 3.0, "ncc": 0.7, "vc": 1.0},
             "c": NCTITerms(seli=2.0, ncc=0.9, vc=3.0)}
    assert ncti_combine(terms) == pytest.approx({"a": 0.0 + 0.0 - 0.5, "b": 1.0 + 0.5 - 0.0, "c": 0.5 + 1.0 - 1.0})
