"""Every sub-command refuses an impossible number at parse time: exit status 2 and one line naming the argument and
what was expected, before any file is read or anything is trained."""

from __future__ import annotations

import pytest

from hf_twophase.cli.main import main
from hf_twophase.cli.select import build_parser

RECORDS = ["--records", "/nonexistent/records.csv"]  # never read: the argument check comes first


@pytest.mark.parametrize("argv, message", [
    (["replay", *RECORDS, "--stage", "0"], "--stage: expected a positive integer, got 0"),
    (["replay", *RECORDS, "--growth", "0.5"], "--growth: expected a number >= 1"),
    (["replay", *RECORDS, "--budget", "-3"], "--budget: expected a positive integer"),
    (["replay", *RECORDS, "--threshold", "nan"], "--threshold: expected a number >= 0"),
    (["replay", *RECORDS, "--k", "0"], "--k: expected a positive integer"),
    (["cluster", *RECORDS, "--top-k", "0"], "--top-k: expected a positive integer"),
    (["cluster", *RECORDS, "--threshold=-1"], "--threshold: expected a number >= 0"),
    (["recall", *RECORDS, "--proxy", "p.csv", "--target", "t", "--k", "0"], "--k: expected a positive integer"),
    (["recall", *RECORDS, "--proxy", "p.csv", "--target", "t", "--target-temperature", "0"],
     "--target-temperature: expected a positive number"),
    (["recall", *RECORDS, "--proxy", "p.csv", "--target", "t", "--target-temperature", "nan"],
     "--target-temperature: expected a positive number"),
    (["replay", *RECORDS, "--variant", "curve-models"], "--variant: invalid choice: 'curve-models'"),
    (["synth", "--out", "/nonexistent/x.csv", "--models", "0"], "--models: expected a positive integer"),
    (["build-matrix", "--models", "m", "--benchmarks", "digits", "--out", "/nonexistent", "--epochs", "0"],
     "--epochs: expected a positive number"),
    (["build-matrix", "--models", "m", "--benchmarks", "digits", "--out", "/nonexistent", "--workers", "0"],
     "--workers: expected a positive integer"),
    (["hub-server", "--root", "/nonexistent", "--port", "70000"], "--port: expected a TCP port from 0 to 65535"),
    (["hub-server", "--root", "/nonexistent", "--timeout", "0"], "--timeout: expected a positive number"),
])
def test_impossible_numbers_end_at_parse_time(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help_states_each_default_once():
    parser = build_parser("select")
    formatter = parser._get_formatter()
    for action in parser._actions:
        assert formatter._get_help_string(action).count("(default:") <= 1, action.help
    text = parser.format_help()
    assert "(default: None)" not in text
    from hf_twophase.matrix_build.defaults import SETUPS

    for task, setup in SETUPS.items():  # the --k help names each embedded default's own k
        assert f"{setup.k} for {task}" in " ".join(text.split())


@pytest.mark.parametrize("argv, message", [
    (["--proxy", "parc"], "--proxy: invalid choice: 'parc'"),
    (["--proxy", "../leep"], "--proxy: invalid choice: '../leep'"),
    (["--variant", "curve"], "--variant: invalid choice: 'curve'"),
])
def test_select_refuses_an_unknown_proxy_or_variant_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser("select").parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
