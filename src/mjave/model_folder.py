"""Loading a model folder: one straight path, every file read once.

    folder -> kind -> config -> schema -> tokenizer -> weights/graph -> network

`ModelFolder.read` walks it up to the network (the shape of GLiNER's `from_pretrained` and
spaCy's `util.load_model_from_path`):

1. kind: "onnx" when the folder holds `export.json` (`mjave export`), else "torch"; decided
   here once, and the files that kind needs are checked (a missing one is named);
2. config: `config.json`, the RunConfig (the export record too, for an ONNX folder);
3. schema: `schema.json`;
4. tokenizer: the folder's own `tokenizer/` when it has one (every folder the trainer or the
   exporter writes does), else the text encoder's tokenizer; for a torch folder the installed
   text encoder is found (and its content hash checked against `encoder.json`) first, once;
5. weights/graph: the path of `model.safetensors`, or of the ONNX graph (`load_weights` reads
   the tensors; nothing is unpickled);
6. `versions.json` and `metrics.json`, informational.

The network is built from it by `mjave.pretrained.LoadedModel.from_folder` (torch) or
`mjave.inference.onnx_runtime.load_exported` (onnxruntime); `Extractor.load`, `mjave evaluate`,
`mjave serve` and `mjave export` all start from one `ModelFolder`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file

from mjave.config import EncoderConfig, RunConfig, from_dict
from mjave.data.lexicon import ValueLexicon
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import Tokenizer
from mjave.encoders import text as text_encoders
from mjave.installed_encoder import check_text_encoder, text_encoder_path
from mjave.model_files import (CONFIG, EXPORT, GRAPH, SCHEMA, TOKENIZER_DIR, WEIGHTS,
                               check_folder, is_exported, read_encoder_record, read_json,
                               read_metrics, read_versions)

Kind = Literal["torch", "onnx"]


def folder_kind(folder: str | Path) -> Kind:
    """"onnx" for an exported folder (it has the export record), else "torch"."""
    return "onnx" if is_exported(folder) else "torch"


def read_config(folder: str | Path, kind: Kind | None = None) -> RunConfig:
    """The RunConfig of a model folder, without touching the weights (the folder is checked;
    `kind`: the folder's kind, when the caller has decided it already)."""
    folder = check_folder(folder, None if kind is None else kind == "onnx")
    data = read_json(folder / CONFIG)
    model = data.get("model")
    if isinstance(model, dict) and "implicit_image_norm" not in model:
        # a folder records every field, so this one was written before the switch existed,
        # when the implicit head had one LayerNorm: its weights are the joint head's
        model["implicit_image_norm"] = "joint"
    return from_dict(RunConfig, data)


def tokenizer_path(encoder: EncoderConfig, folder: str | Path | None = None,
                   text_encoder: Path | None = None) -> Path:
    """Where the tokenizer is read from: model folder `folder`'s own `tokenizer/` when it has
    one, else the text encoder's folder (`text_encoder` when already found)."""
    own = Path(folder) / TOKENIZER_DIR if folder is not None else None
    if own is not None and own.is_dir():
        return own
    return text_encoder or text_encoder_path(encoder, folder)


def load_tokenizer(encoder: EncoderConfig, path: Path) -> Tokenizer:
    """The tokenizer in `path`, character-level when the encoder config says so."""
    return text_encoders.load_tokenizer(path, char_level=encoder.char_level)


def kind_mismatch(folder: Path, kind: Kind) -> ValueError:
    """The error for loading a folder of `kind` where the other kind was asked for."""
    if kind == "onnx":
        return ValueError(f"{folder} is an exported ONNX folder (no torch weights): load it "
                          "with Extractor.load, which runs it with onnxruntime")
    return ValueError(f"{folder} is not an exported ONNX folder (no {EXPORT}); write one with "
                      "`mjave export`")


@dataclass(frozen=True)
class ModelFolder:
    """Everything a model folder holds but its network, each file read once (module docstring)."""

    path: Path
    kind: Kind
    config: RunConfig
    schema: AttributeSchema
    tokenizer: Tokenizer
    tokenizer_path: Path
    weights: Path
    """`model.safetensors` (torch) or the ONNX graph the export record names (onnx)."""
    text_encoder: Path | None
    """The installed text encoder the network runs or was built on (torch folders of a
    pretrained encoder); None for a BiLSTM and for an ONNX folder, whose graph holds it."""
    export: dict[str, Any] | None
    """`export.json` of an ONNX folder (its graphs' signatures); None for a torch folder."""
    encoder_record: dict[str, Any]
    versions: dict[str, str]
    metrics: dict[str, Any]
    lexicon: ValueLexicon | None = None
    """`value_lexicon.json`: the known values a `model.value_knowledge` model matches."""

    @classmethod
    def read(cls, folder: str | os.PathLike[str], expect: Kind | None = None) -> "ModelFolder":
        """Read `folder` along the one path; `expect`: refuse a folder of the other kind
        (ValueError naming the loader to use)."""
        path = Path(folder)
        kind = folder_kind(path)
        config = read_config(path, kind)
        if expect is not None and kind != expect:
            raise kind_mismatch(path, kind)
        schema = AttributeSchema.load(path / SCHEMA)
        export = read_json(path / EXPORT) if kind == "onnx" else None
        record = read_encoder_record(path)
        encoder = None
        if kind == "torch":
            encoder = check_text_encoder(path, config.encoder, record)
            tok_path = tokenizer_path(config.encoder, path, encoder)
        else:
            tok_path = path / TOKENIZER_DIR  # an exported folder tokenizes by itself
        weights = path / (export.get("file", GRAPH) if export is not None else WEIGHTS)
        lexicon = ValueLexicon.load(path) if config.model.value_knowledge else None
        return cls(path, kind, config, schema, load_tokenizer(config.encoder, tok_path),
                   tok_path, weights, encoder, export, record, read_versions(path),
                   read_metrics(path), lexicon)

    def load_weights(self) -> dict[str, torch.Tensor]:
        """The torch weights (safetensors: nothing is unpickled)."""
        if self.kind != "torch":
            raise kind_mismatch(self.path, self.kind)
        return load_file(str(self.weights))


__all__ = ["Kind", "ModelFolder", "folder_kind", "kind_mismatch", "load_tokenizer",
           "read_config", "tokenizer_path"]
