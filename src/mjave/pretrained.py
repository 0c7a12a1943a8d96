"""The model folder: the one place that writes, reads and rebuilds a trained model.

A model folder holds `config.json` (the RunConfig), `schema.json`, `model.safetensors` (weights
only: nothing is ever unpickled), `versions.json` (the library versions that trained it),
`metrics.json`, `tokenizer/` (the text encoder's tokenizer files: the folder tokenizes by itself),
`encoder.json` (which text encoder it was trained on, by name and content hash, and how to
install it) and `README.md` (the model card, `mjave.training.model_card`). Every file is written
atomically with the ordinary file mode (0644 under the usual umask). Training, the Extractor, the
Ray driver, experiments and benchmarks all go through here, so the format and the "does this model
read the image" rule live in one place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mjave import __version__
from mjave.config import (ConfigError, EncoderConfig, ModelConfig, RunConfig, from_dict,
                          to_dict)
from mjave.data.outputs import atomic_write, publish, temporary_path
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import TextAligner, Tokenizer
from mjave.encoders import text as text_encoders
from mjave.encoders.features import (hidden_size_from_config, image_feature_dim,
                                     model_content_hash)
from mjave.model.network import TextImageModel
from mjave.model.registry import architecture_uses_image, build_model

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


# ---- the rules ------------------------------------------------------------------------------

def uses_image(config: RunConfig) -> bool:
    """Whether a model of `config` reads the product image: the config asks for it, an image
    encoder is named and the architecture has image inputs (text-only baselines do not)."""
    return bool(config.model.use_image and config.encoder.image_encoder != "none"
                and architecture_uses_image(config.model.architecture))


def text_in_loop(encoder: EncoderConfig) -> bool:
    """True when the text encoder trains with the model (BiLSTM, or BERT with some or all of
    its layers fine-tuned), so its final token states cannot be cached. The model folder then
    holds the whole encoder and prediction runs it whole."""
    return encoder.text_kind == "bilstm" or encoder.trains_text_encoder


def versions() -> dict[str, str]:
    """The library versions of this process (written into every model folder)."""
    import transformers
    return {"mjave": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


# ---- files ----------------------------------------------------------------------------------

def write_json(path: Path, data: Any) -> None:
    """`data` as indented UTF-8 JSON, atomically (a kill leaves the old file or the new one)."""
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """`tensors` as safetensors, atomically and with the ordinary file mode (safetensors alone
    creates its files 0600)."""
    tmp = temporary_path(path)
    try:
        save_file(cpu_tensors(tensors), str(tmp))
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies: what safetensors can write."""
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def check_folder(folder: str | Path) -> Path:
    """`folder` as a Path; FileNotFoundError naming the folder or its first missing file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    for name in EXPORTED_REQUIRED if is_exported(folder) else REQUIRED:
        if not (folder / name).is_file():
            raise missing_file(folder / name)
    return folder


def write_config(folder: str | Path, config: RunConfig) -> None:
    """`config.json` alone (the trainer writes it before the first epoch's weights)."""
    write_json(Path(folder) / CONFIG, to_dict(config))


def save_model(folder: str | Path, model: torch.nn.Module, config: RunConfig,
               schema: AttributeSchema, metrics: dict | None = None) -> Path:
    """Write a complete model folder; `config` should be the one the network was built with."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / WEIGHTS, model.state_dict())
    write_config(folder, config)
    write_json(folder / SCHEMA, schema.to_json())
    write_json(folder / VERSIONS, versions())
    if metrics is not None:
        write_json(folder / METRICS, metrics)
    return folder


def read_config(folder: str | Path) -> RunConfig:
    """The RunConfig of a model folder, without touching the weights (the folder is checked)."""
    folder = check_folder(folder)
    return from_dict(RunConfig, read_json(folder / CONFIG))


def load_model_files(folder: str | Path
                     ) -> tuple[RunConfig, AttributeSchema, dict[str, torch.Tensor]]:
    """Config, schema and weights of a model folder (`LoadedModel.load` builds the modules)."""
    config = read_config(folder)
    folder = Path(folder)
    if is_exported(folder):
        raise ValueError(f"{folder} is an exported ONNX folder (no torch weights): load it with "
                         "Extractor.load, which runs it with onnxruntime")
    return config, AttributeSchema.load(folder / SCHEMA), load_file(str(folder / WEIGHTS))


def read_versions(folder: str | Path) -> dict[str, str]:
    """The versions that trained the model; empty (with a warning) when unknown."""
    path = Path(folder) / VERSIONS
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        log.warning("%s is not readable JSON; the training versions are unknown", path)
        return {}


# ---- exported folders (`mjave export`) -------------------------------------------------------

def is_exported(folder: str | Path) -> bool:
    """Whether `folder` is an exported ONNX folder (it has the export record)."""
    return (Path(folder) / EXPORT).is_file()


def export_mismatches(config: RunConfig, schema: AttributeSchema, record: dict) -> list[str]:
    """What the export record's graph disagrees with in the folder's config and schema (sizes of
    the outputs, the hidden size, the image inputs); empty when they match."""
    model = config.model
    problems = []
    if model.num_attributes != schema.num_attributes:
        problems.append(f"config.json has {model.num_attributes} attributes, schema.json "
                        f"{schema.num_attributes}")
    outputs = {o["name"]: o["shape"] for o in record.get("outputs", [])}
    inputs = {i["name"]: i["shape"] for i in record.get("inputs", [])}
    expected = {"attr_logits": ("attributes", schema.num_attributes),
                "tag_logits": ("tags", schema.num_tags)}
    for name, (what, size) in expected.items():
        shape = outputs.get(name)
        if shape is None:
            problems.append(f"the graph has no output {name!r}")
        elif shape[-1] != size:
            problems.append(f"the graph's {name} has {shape[-1]} {what}, the schema {size}")
    if record.get("text_dim") != model.text_dim:
        problems.append(f"the graph was exported with hidden size {record.get('text_dim')}, "
                        f"config.json says {model.text_dim}")
    image = uses_image(config)
    if image != ("v" in inputs):
        problems.append("config.json says the model " + ("reads" if image else "does not read")
                        + " the image, the graph " + ("does not" if image else "does"))
    elif image:
        if not record.get("image"):
            problems.append(f"the model reads the image but the export has no image graph "
                            f"({IMAGE_GRAPH})")
        for name, shape in (("v_global", inputs.get("v_global")), ("v", inputs.get("v"))):
            if shape is None or shape[-1] != model.image_dim:
                problems.append(f"the graph's image input {name} has shape {shape}, config.json "
                                f"says image features of size {model.image_dim}")
    return problems


def read_export(folder: str | Path) -> tuple[RunConfig, AttributeSchema, dict]:
    """Config, schema and export record of an exported folder; ValueError naming every
    disagreement when its graph does not match its config (no graph is loaded here:
    `mjave.inference.onnx_runtime` checks the graph itself against the record)."""
    config = read_config(folder)
    folder = Path(folder)
    if not is_exported(folder):
        raise ValueError(f"{folder} is not an exported ONNX folder (no {EXPORT}); write one "
                         "with `mjave export`")
    schema = AttributeSchema.load(folder / SCHEMA)
    record = read_json(folder / EXPORT)
    problems = export_mismatches(config, schema, record)
    if problems:
        raise ValueError(f"{folder}: the ONNX graph does not match the folder's config: "
                         + "; ".join(problems) + " (export the model again with `mjave export`)")
    return config, schema, record


# ---- the text encoder a folder was trained on ------------------------------------------------

class EncoderMissingError(FileNotFoundError):
    """The text encoder a model folder needs is not on this machine (one line: what and how)."""


def text_encoder_path(encoder: EncoderConfig, folder: str | Path | None = None) -> Path:
    """The folder of the configured text encoder; EncoderMissingError saying how to install it
    (or where it was) when it is not there. `folder`: the model folder, whose encoder.json
    names the encoder's content hash in the message."""
    name = encoder.text_encoder
    try:
        path = text_encoders.resolve_text_encoder_path(name)
        if path.is_dir():
            return path
    except (ImportError, OSError, ValueError):
        pass
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


def read_encoder_record(folder: str | Path) -> dict[str, Any]:
    """`encoder.json` of a model folder; empty for folders written before it existed."""
    path = Path(folder) / ENCODER
    if not path.is_file():
        return {}
    try:
        return dict(read_json(path))
    except (ValueError, TypeError):
        log.warning("%s is not readable JSON; the text encoder's hash is unknown", path)
        return {}


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


def save_encoder_files(folder: str | Path, encoder: EncoderConfig) -> None:
    """`tokenizer/` and `encoder.json`: a model folder tokenizes by itself and names the text
    encoder it needs by content hash (the trainer writes them once, before the first epoch)."""
    folder = Path(folder)
    copy_tokenizer(text_encoder_path(encoder), folder / TOKENIZER_DIR)
    write_json(folder / ENCODER, encoder_record(encoder))


def check_text_encoder(folder: str | Path, encoder: EncoderConfig) -> None:
    """Before building a model: its pretrained text encoder must be installed (else one line
    saying how), and a frozen one should be the one it was trained on. Same name but other
    weights (another content hash) is a warning: its features are not those the model learnt
    from. A BiLSTM needs nothing beyond the folder's own tokenizer."""
    if encoder.text_kind == "bilstm":
        return
    path = text_encoder_path(encoder, folder)
    expected = read_encoder_record(folder).get("content_hash")
    if not expected or text_in_loop(encoder):
        return
    found = model_content_hash(path)
    if found != expected:
        log.warning("%s was trained on text encoder %r with content hash %s, but the installed "
                    "one has %s: predictions may be off", folder, encoder.text_encoder,
                    expected, found)


# ---- building what a config describes -------------------------------------------------------

def make_tokenizer(encoder: EncoderConfig, folder: str | Path | None = None) -> Tokenizer:
    """The tokenizer of model folder `folder` (its `tokenizer/`), else the encoder's own."""
    own = Path(folder) / TOKENIZER_DIR if folder is not None else None
    path = own if own is not None and own.is_dir() else text_encoder_path(encoder, folder)
    return text_encoders.load_tokenizer(path, char_level=encoder.char_level)


def make_aligner(encoder: EncoderConfig, schema: AttributeSchema | None,
                 tokenizer: Tokenizer | None = None) -> TextAligner:
    return TextAligner(tokenizer or make_tokenizer(encoder), schema, max_length=encoder.max_length)


def make_text_encoder(encoder: EncoderConfig, tokenizer: Tokenizer) -> torch.nn.Module:
    """The in-loop text encoder (only called when `text_in_loop`)."""
    if encoder.text_kind == "bilstm":
        return text_encoders.BiLSTMTextEncoder(vocab_size=tokenizer.vocab_size,
                                               pad_id=tokenizer.pad_id)
    path = text_encoder_path(encoder)
    top = encoder.layers_trained if encoder.caches_lower_layers else "all"
    return text_encoders.HFTextEncoder.from_pretrained(path, fine_tune=True, train_layers=top)


def text_feature_dim(encoder: EncoderConfig, text_module: torch.nn.Module | None) -> int:
    if text_module is not None:
        return int(text_module.hidden_size)
    return hidden_size_from_config(text_encoder_path(encoder))


def build_network(config: RunConfig, schema: AttributeSchema, tokenizer: Tokenizer
                  ) -> tuple[TextImageModel, ModelConfig]:
    """The network for `config`, with the sizes the encoders and schema dictate filled in (the
    returned ModelConfig is what the model folder records: `use_image` is `uses_image`)."""
    enc = config.encoder
    text_module = make_text_encoder(enc, tokenizer) if text_in_loop(enc) else None
    image = uses_image(config)
    model_cfg = dataclasses.replace(
        config.model, num_attributes=schema.num_attributes, use_image=image,
        text_dim=text_feature_dim(enc, text_module),
        image_dim=image_feature_dim(enc.image_encoder) if image else config.model.image_dim)
    return TextImageModel(build_model(model_cfg), text_module), model_cfg


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name` names ("auto": CUDA when there is one). A name torch does not know,
    or CUDA where this torch build or machine has none, is a ConfigError (one `error:` line
    from the CLI), not torch's traceback at the first tensor moved there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {name!r} is not one torch knows (auto, cpu, cuda or "
                          "cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise ConfigError(f"device {name!r}: there is no CUDA ({why}); use cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA device(s), "
                              f"numbered from 0")
    return device


@dataclass
class LoadedModel:
    """A trained model folder, ready to featurise and predict."""

    folder: Path
    config: RunConfig
    schema: AttributeSchema
    net: TextImageModel
    aligner: TextAligner
    device: torch.device

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> "LoadedModel":
        config, schema, weights = load_model_files(folder)
        check_text_encoder(folder, config.encoder)
        tokenizer = make_tokenizer(config.encoder, folder)
        net, model_cfg = build_network(config, schema, tokenizer)
        net.load_state_dict(weights)
        config = dataclasses.replace(config, model=model_cfg)
        dev = resolve_device(device)
        net.to(dev).eval()
        aligner = make_aligner(config.encoder, schema, tokenizer)
        return cls(Path(folder), config, schema, net, aligner, dev)

    @property
    def uses_text_features(self) -> bool:
        return not text_in_loop(self.config.encoder)

    @property
    def uses_image(self) -> bool:
        return uses_image(self.config)


__all__ = ["CARD", "CONFIG", "ENCODER", "EXPORT", "EncoderMissingError", "TOKENIZER_FILES",
           "check_text_encoder", "copy_tokenizer", "encoder_record", "read_encoder_record",
           "save_encoder_files", "save_tensors", "text_encoder_path", "EXPORTED_REQUIRED", "GRAPH", "IMAGE_GRAPH", "LoadedModel",
           "METRICS", "REQUIRED", "SCHEMA", "TOKENIZER_DIR", "VERSIONS", "WEIGHTS",
           "export_mismatches", "is_exported", "read_export",
           "build_network", "check_folder", "cpu_tensors", "load_model_files", "make_aligner",
           "make_text_encoder", "make_tokenizer", "missing_file", "read_config", "read_json",
           "read_versions", "resolve_device", "save_model", "text_feature_dim", "text_in_loop",
           "uses_image", "versions", "write_config", "write_json"]
