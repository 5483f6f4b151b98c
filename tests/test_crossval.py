"""The k-fold protocol: fixed folds, choices made on the training folds only."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_twophase.errors import SelectionError
from hf_twophase.method.crossval import cross_validate, dataset_folds


def test_folds_partition_the_datasets_and_depend_only_on_the_seed():
    names = [f"d{i}" for i in range(10)]
    folds = dataset_folds(names, 3, seed=4)
    assert sorted(d for f in folds for d in f) == sorted(names) and sorted(map(len, folds)) == [3, 3, 4]
    assert dataset_folds(list(reversed(names)), 3, seed=4) == folds
    assert dataset_folds(names, 3, seed=5) != folds
    with pytest.raises(SelectionError, match="2 <= k"):
        dataset_folds(names[:2], 3)


def test_a_setting_is_never_chosen_on_the_data_it_is_reported_on():
    folds = [["a", "b"], ["c", "d"]]
    # setting "x" is perfect on fold 1 and useless on fold 2; "y" the opposite
    table = {("x", "a"): 1, ("x", "b"): 1, ("x", "c"): 0, ("x", "d"): 0,
             ("y", "a"): 0, ("y", "b"): 0, ("y", "c"): 1, ("y", "d"): 1}
    calls = []

    def evaluate(setting, dataset):
        calls.append((setting, dataset))
        return {"good": table[(setting, dataset)]}

    results = cross_validate(folds, ["x", "y"], evaluate, lambda outs: (sum(o["good"] for o in outs),))
    assert [r.chosen for r in results] == ["y", "x"]  # chosen on the other fold ...
    assert all(o["good"] == 0 for r in results for o in r.outcomes.values())  # ... so the held-out figure is honest
    assert len(calls) == len(set(calls)) == 8  # each pair evaluated once
    with pytest.raises(SelectionError):
        cross_validate(folds, [], evaluate, lambda outs: (0,))


def test_versus_halving_counts_stage_lengths_no_worse_on_both_counts_then_the_gain():
    import math

    from hf_twophase.method.crossval import versus_halving

    def outcome(setting, halving):
        return {"setting": setting, "halving": halving}

    # stage 1: faster at the same regret (counts); stage 2: faster but loses more (does not count)
    outcomes = [outcome({1: (4.0, 0.0), 2: (6.0, 1.0)}, {1: (2.0, 0.0), 2: (3.0, 0.5)})] * 3
    no_worse, gain = versus_halving(outcomes, [1, 2])
    assert no_worse == 1 and gain == pytest.approx(math.log(2) + (-0.5 + math.log(2)))
    same = [outcome({1: (2.0, 0.0)}, {1: (2.0, 0.0)})]
    assert versus_halving(same, [1]) == (1, 0.0)


@pytest.mark.parametrize("bad", ["1,x", "0", "", "2,-1", "1,,2"])
def test_the_replay_benchmarks_refuse_bad_stage_lengths_at_parse_time(bad, capsys, monkeypatch):
    """The three replay benchmarks share one --stages type: one clear error, before any records are read."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from report_io import cv_parser

    parser = cv_parser("replay\n", stages="1,2")
    assert parser.parse_args(["--records", "r.csv"]).stages == [1, 2]
    with pytest.raises(SystemExit):
        parser.parse_args(["--records", "r.csv", "--stages", bad])
    assert "expected comma-separated positive integers" in capsys.readouterr().err
