"""The text encoder a model folder needs: where it is installed, what `encoder.json` records of
it, and the check that the installed one is the one the model was trained on.

A frozen encoder is not copied into the folder (prediction runs the installed one, as training
did), so loading must say in one line how to get it when it is missing (`EncoderMissingError`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mjave.config import EncoderConfig
from mjave.encoders import text as text_encoders
from mjave.encoders.features import model_content_hash
from mjave.model_files import (ENCODER, TOKENIZER_DIR, copy_tokenizer, read_encoder_record,
                               write_json)

log = logging.getLogger(__name__)


def text_in_loop(encoder: EncoderConfig) -> bool:
    """True when the text encoder trains with the model (BiLSTM, or BERT with some or all of
    its layers fine-tuned), so its final token states cannot be cached. The model folder then
    holds the whole encoder and prediction runs it whole."""
    return encoder.text_kind == "bilstm" or encoder.trains_text_encoder


class EncoderMissingError(FileNotFoundError):
    """The text encoder a model folder needs is not on this machine (one line: what and how)."""


def text_encoder_path(encoder: EncoderConfig, folder: str | Path | None = None,
                      record: dict[str, Any] | None = None) -> Path:
    """The folder of the configured text encoder; EncoderMissingError saying how to install it
    (or where it was) when it is not there. `folder`: the model folder, whose encoder.json
    (`record`, when already read) names the encoder's content hash in the message."""
    name = encoder.text_encoder
    try:
        path = text_encoders.resolve_text_encoder_path(name)
        if path.is_dir():
            return path
    except (ImportError, OSError, ValueError):
        pass
    if record is None:
        record = read_encoder_record(folder) if folder is not None else {}
    hash_note = f" (content hash {record['content_hash']})" if record.get("content_hash") else ""
    hint = text_encoders.install_hint(name)
    how = (f"install it with `{hint}`" if hint else
           "put that encoder folder back there, or set encoder.text_encoder in config.json to "
           "a copy of it")
    where = f"{folder}: " if folder is not None else ""
    raise EncoderMissingError(f"{where}the text encoder {name!r}{hash_note} is not installed; "
                              f"{how}")


def encoder_record(encoder: EncoderConfig) -> dict[str, Any]:
    """What `encoder.json` says: the configured name, whether the encoder stays frozen (then
    prediction needs it installed), its content hash (config.json and weight files) and the
    command that installs it."""
    path = text_encoder_path(encoder)
    return {"text_encoder": encoder.text_encoder, "text_kind": encoder.text_kind,
            "frozen": not text_in_loop(encoder), "fine_tune": encoder.fine_tune,
            "train_layers": encoder.train_layers,
            "content_hash": model_content_hash(path) if encoder.text_kind != "bilstm" else None,
            "install": text_encoders.install_hint(encoder.text_encoder)}


def save_encoder_files(folder: str | Path, encoder: EncoderConfig) -> None:
    """`tokenizer/` and `encoder.json`: a model folder tokenizes by itself and names the text
    encoder it needs by content hash (the trainer writes them once, before the first epoch)."""
    folder = Path(folder)
    copy_tokenizer(text_encoder_path(encoder), folder / TOKENIZER_DIR)
    write_json(folder / ENCODER, encoder_record(encoder))


def check_text_encoder(folder: str | Path, encoder: EncoderConfig,
                       record: dict[str, Any] | None = None) -> Path | None:
    """Before building a model: its pretrained text encoder must be installed (else one line
    saying how), and a frozen one should be the one it was trained on. Same name but other
    weights (another content hash) is a warning: its features are not those the model learnt
    from. A BiLSTM needs nothing beyond the folder's own tokenizer (None). Returns the installed
    encoder's folder; `record`: the folder's encoder.json when already read."""
    if encoder.text_kind == "bilstm":
        return None
    if record is None:
        record = read_encoder_record(folder)
    path = text_encoder_path(encoder, folder, record)
    expected = record.get("content_hash")
    if not expected or text_in_loop(encoder):
        return path
    found = model_content_hash(path)
    if found != expected:
        log.warning("%s was trained on text encoder %r with content hash %s, but the installed "
                    "one has %s: predictions may be off", folder, encoder.text_encoder,
                    expected, found)
    return path


__all__ = ["EncoderMissingError", "check_text_encoder", "encoder_record", "save_encoder_files",
           "text_encoder_path", "text_in_loop"]
