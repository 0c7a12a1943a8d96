"""The files of a model folder by name, and the one way each is written and read.

Kept apart from what the files mean (`mjave.model_folder` reads a folder, `mjave.pretrained`
writes one and builds its network) so both sides agree on names, atomic writes and the
messages that name a missing or unreadable file. Every file is written atomically with the
ordinary file mode (0644 under the usual umask).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from mjave.data.outputs import atomic_write, publish, temporary_path

log = logging.getLogger(__name__)

CONFIG = "config.json"
SCHEMA = "schema.json"
WEIGHTS = "model.safetensors"
VERSIONS = "versions.json"
METRICS = "metrics.json"
ENCODER = "encoder.json"
CARD = "README.md"
REQUIRED = (CONFIG, SCHEMA, WEIGHTS)
"""The files without which a folder is no model (versions and metrics are informational)."""
GRAPH = "model.onnx"
IMAGE_GRAPH = "image.onnx"
EXPORT = "export.json"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                   "spiece.model", "sentencepiece.bpe.model")
"""What a tokenizer (fast HF, WordPiece vocab or character-level) is read from; no weights."""
EXPORTED_REQUIRED = (CONFIG, SCHEMA, GRAPH, EXPORT)
"""An exported folder (`mjave export`): the ONNX graph and the record of the export instead of
the weights; `tokenizer/` holds the tokenizer files, `image.onnx` the image encoder."""


# ---- writing ---------------------------------------------------------------------------------

def write_json(path: Path, data: Any) -> None:
    """`data` as indented UTF-8 JSON, atomically (a kill leaves the old file or the new one)."""
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies: what safetensors can write."""
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """`tensors` as safetensors, atomically and with the ordinary file mode (safetensors alone
    creates its files 0600)."""
    tmp = temporary_path(path)
    try:
        save_file(cpu_tensors(tensors), str(tmp))
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def copy_tokenizer(encoder_path: Path, out: Path) -> Path:
    """The tokenizer files of the encoder folder in `out` (no weights), each written atomically
    with the ordinary file mode."""
    copied = [name for name in TOKENIZER_FILES if (encoder_path / name).is_file()]
    if not copied:
        raise FileNotFoundError(f"{encoder_path}: no tokenizer files to copy")
    out.mkdir(parents=True, exist_ok=True)
    for name in copied:
        with atomic_write(out / name, "wb") as f, open(encoder_path / name, "rb") as src:
            shutil.copyfileobj(src, f)
    return out


# ---- reading ---------------------------------------------------------------------------------

def missing_file(path: Path) -> FileNotFoundError:
    """The error for a model-folder file that is not there, naming it."""
    return FileNotFoundError(f"{path}: missing (is {path.parent} an mjave model folder?)")


def read_json(path: Path) -> Any:
    """The JSON at `path`, with errors that name the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise missing_file(path) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def is_exported(folder: str | Path) -> bool:
    """Whether `folder` is an exported ONNX folder (it has the export record)."""
    return (Path(folder) / EXPORT).is_file()


def check_folder(folder: str | Path, exported: bool | None = None) -> Path:
    """`folder` as a Path; FileNotFoundError naming the folder or its first missing file.
    `exported`: whether it is an exported folder, when the caller has decided it already."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    if exported is None:
        exported = is_exported(folder)
    for name in EXPORTED_REQUIRED if exported else REQUIRED:
        if not (folder / name).is_file():
            raise missing_file(folder / name)
    return folder


def read_informational(path: Path, what: str) -> dict[str, Any]:
    """A JSON object the model predicts without (versions, metrics, the encoder record): empty
    when absent, empty with a warning saying `what` is unknown when unreadable."""
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        log.warning("%s is not readable JSON; %s", path, what)
        return {}


def read_versions(folder: str | Path) -> dict[str, str]:
    """The versions that trained the model; empty (with a warning) when unknown."""
    return read_informational(Path(folder) / VERSIONS, "the training versions are unknown")


def read_encoder_record(folder: str | Path) -> dict[str, Any]:
    """`encoder.json` of a model folder; empty for folders written before it existed."""
    return read_informational(Path(folder) / ENCODER, "the text encoder's hash is unknown")


def read_metrics(folder: str | Path) -> dict[str, Any]:
    """`metrics.json` of a model folder; empty when there is none (or it is unreadable)."""
    return read_informational(Path(folder) / METRICS, "the model's metrics are unknown")


__all__ = ["CARD", "CONFIG", "ENCODER", "EXPORT", "EXPORTED_REQUIRED", "GRAPH", "IMAGE_GRAPH",
           "METRICS", "REQUIRED", "SCHEMA", "TOKENIZER_DIR", "TOKENIZER_FILES", "VERSIONS",
           "WEIGHTS", "check_folder", "copy_tokenizer", "cpu_tensors", "is_exported",
           "missing_file", "read_encoder_record", "read_informational", "read_json",
           "read_metrics", "read_versions", "save_tensors", "write_json"]
