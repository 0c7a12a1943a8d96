"""The model folder: writing one, the rules it follows, and building the network it describes.

A model folder holds `config.json` (the RunConfig), `schema.json`, `model.safetensors` (weights
only: nothing is ever unpickled), `versions.json` (the library versions that trained it),
`metrics.json`, `tokenizer/` (the text encoder's tokenizer files: the folder tokenizes by itself),
`encoder.json` (which text encoder it was trained on, by name and content hash, and how to
install it) and `README.md` (the model card, `mjave.training.model_card`). Training, the
Extractor, the Ray driver, experiments and benchmarks all go through here, so the format and the
"does this model read the image" rule live in one place.

Loading takes one path (`mjave.model_folder`: folder -> kind -> config -> schema -> tokenizer ->
weights/graph), which `LoadedModel.from_folder` ends by building the torch network. The file
names and their readers and writers are `mjave.model_files`'; the text encoder a folder needs is
`mjave.installed_encoder`'s. Both are re-exported here, where callers have always found them.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from mjave import __version__
from mjave.config import ConfigError, EncoderConfig, ModelConfig, RunConfig, to_dict
from mjave.data.lexicon import ValueLexicon
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import TextAligner, Tokenizer
from mjave.encoders import text as text_encoders
from mjave.encoders.colour import colour_feature_dim
from mjave.encoders.features import hidden_size_from_config, image_feature_dim
from mjave.installed_encoder import (EncoderMissingError, check_text_encoder, encoder_record,
                                     save_encoder_files, text_encoder_path, text_in_loop)
from mjave.model.network import TextImageModel
from mjave.model.registry import architecture_uses_image, build_model
from mjave.model_files import (CARD, CONFIG, ENCODER, EXPORT, EXPORTED_REQUIRED, GRAPH,
                               IMAGE_GRAPH, METRICS, REQUIRED, SCHEMA, TOKENIZER_DIR,
                               TOKENIZER_FILES, VERSIONS, WEIGHTS, check_folder, copy_tokenizer,
                               cpu_tensors, is_exported, missing_file, read_encoder_record,
                               read_json, read_versions, save_tensors, write_json)
from mjave.model_folder import (ModelFolder, kind_mismatch, load_tokenizer, read_config,
                                tokenizer_path)


# ---- the rules ------------------------------------------------------------------------------

def uses_image(config: RunConfig) -> bool:
    """Whether a model of `config` reads the product image: the config asks for it, an image
    encoder is named and the architecture has image inputs (text-only baselines do not)."""
    return bool(config.model.use_image and config.encoder.image_encoder != "none"
                and architecture_uses_image(config.model.architecture))


def versions() -> dict[str, str]:
    """The library versions of this process (written into every model folder)."""
    import transformers
    return {"mjave": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


# ---- writing --------------------------------------------------------------------------------

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


# ---- reading (the one path: mjave.model_folder) ----------------------------------------------

def load_model_files(folder: str | Path
                     ) -> tuple[RunConfig, AttributeSchema, dict[str, torch.Tensor]]:
    """Config, schema and weights of a torch model folder (`LoadedModel` builds the modules)."""
    read = ModelFolder.read(folder, expect="torch")
    return read.config, read.schema, read.load_weights()


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
    if model.crf and not record.get("crf"):
        problems.append("config.json says the tagger is a CRF (model.decoding=crf), the export "
                        "record holds no CRF transitions")
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


def check_export(folder: ModelFolder) -> dict:
    """The export record of an exported folder; ValueError naming every disagreement when its
    graph does not match its config (no graph is loaded here: `mjave.inference.onnx_runtime`
    checks the graph itself against the record)."""
    if folder.export is None:
        raise kind_mismatch(folder.path, folder.kind)
    problems = export_mismatches(folder.config, folder.schema, folder.export)
    if problems:
        raise ValueError(f"{folder.path}: the ONNX graph does not match the folder's config: "
                         + "; ".join(problems) + " (export the model again with `mjave export`)")
    return folder.export


def read_export(folder: str | Path) -> tuple[RunConfig, AttributeSchema, dict]:
    """Config, schema and export record of an exported folder, checked (`check_export`)."""
    read = ModelFolder.read(folder, expect="onnx")
    return read.config, read.schema, check_export(read)


# ---- building what a config describes -------------------------------------------------------

def make_tokenizer(encoder: EncoderConfig, folder: str | Path | None = None) -> Tokenizer:
    """The tokenizer of model folder `folder` (its `tokenizer/`), else the encoder's own."""
    return load_tokenizer(encoder, tokenizer_path(encoder, folder))


def make_aligner(encoder: EncoderConfig, schema: AttributeSchema | None,
                 tokenizer: Tokenizer | None = None) -> TextAligner:
    return TextAligner(tokenizer or make_tokenizer(encoder), schema, max_length=encoder.max_length)


def make_text_encoder(encoder: EncoderConfig, tokenizer: Tokenizer,
                      path: Path | None = None) -> torch.nn.Module:
    """The in-loop text encoder (only called when `text_in_loop`); `path`: the installed
    encoder's folder, when already found."""
    if encoder.text_kind == "bilstm":
        return text_encoders.BiLSTMTextEncoder(vocab_size=tokenizer.vocab_size,
                                               pad_id=tokenizer.pad_id)
    top = encoder.layers_trained if encoder.caches_lower_layers else "all"
    return text_encoders.HFTextEncoder.from_pretrained(path or text_encoder_path(encoder),
                                                       fine_tune=True, train_layers=top)


def frozen_text_encoder(folder: ModelFolder) -> torch.nn.Module | None:
    """The frozen text encoder whose token states a cached-feature model of `folder` reads, on
    CPU; None when the encoder trains with the model (its network holds it)."""
    if text_in_loop(folder.config.encoder):
        return None
    assert folder.text_encoder is not None  # ModelFolder.read found it
    return text_encoders.HFTextEncoder.from_pretrained(folder.text_encoder, fine_tune=False)


def text_feature_dim(encoder: EncoderConfig, text_module: torch.nn.Module | None,
                     path: Path | None = None) -> int:
    if text_module is not None:
        return int(text_module.hidden_size)
    return hidden_size_from_config(path or text_encoder_path(encoder))


def build_network(config: RunConfig, schema: AttributeSchema, tokenizer: Tokenizer,
                  encoder_path: Path | None = None) -> tuple[TextImageModel, ModelConfig]:
    """The network for `config`, with the sizes the encoders and schema dictate filled in (the
    returned ModelConfig is what the model folder records: `use_image` is `uses_image`).
    `encoder_path`: the installed text encoder's folder, when already found."""
    enc = config.encoder
    text_module = make_text_encoder(enc, tokenizer, encoder_path) if text_in_loop(enc) else None
    image = uses_image(config)
    model_cfg = dataclasses.replace(
        config.model, num_attributes=schema.num_attributes, use_image=image,
        implicit_sizes=[hi - lo for _, lo, hi in schema.implicit_slots()],
        text_dim=text_feature_dim(enc, text_module, encoder_path),
        image_dim=(image_feature_dim(enc.image_encoder, enc.image_colour_bins) if image
                   else config.model.image_dim),
        image_colour_dim=colour_feature_dim(enc.image_colour_bins) if image else 0)
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
    lexicon: ValueLexicon | None = None   # `model.value_knowledge`: the values it matches

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> "LoadedModel":
        """The torch model of `folder` (`ModelFolder.read`, then `from_folder`)."""
        return cls.from_folder(ModelFolder.read(folder, expect="torch"), device)

    @classmethod
    def from_folder(cls, folder: ModelFolder, device: str = "auto") -> "LoadedModel":
        """The last step of the one path: the network of a read torch folder, its weights
        loaded, on `device`."""
        weights = folder.load_weights()
        net, model_cfg = build_network(folder.config, folder.schema, folder.tokenizer,
                                       folder.text_encoder)
        net.load_state_dict(weights)
        config = dataclasses.replace(folder.config, model=model_cfg)
        dev = resolve_device(device)
        net.to(dev).eval()
        aligner = make_aligner(config.encoder, folder.schema, folder.tokenizer)
        return cls(folder.path, config, folder.schema, net, aligner, dev, folder.lexicon)

    @property
    def uses_text_features(self) -> bool:
        return not text_in_loop(self.config.encoder)

    @property
    def uses_image(self) -> bool:
        return uses_image(self.config)


__all__ = ["CARD", "CONFIG", "ENCODER", "EXPORT", "EXPORTED_REQUIRED", "GRAPH", "IMAGE_GRAPH",
           "METRICS", "REQUIRED", "SCHEMA", "TOKENIZER_DIR", "TOKENIZER_FILES", "VERSIONS",
           "WEIGHTS", "EncoderMissingError", "LoadedModel", "ModelFolder", "build_network",
           "check_export", "check_folder", "check_text_encoder", "copy_tokenizer",
           "cpu_tensors", "encoder_record", "export_mismatches", "frozen_text_encoder",
           "is_exported", "load_model_files", "make_aligner", "make_text_encoder",
           "make_tokenizer", "missing_file", "read_config", "read_encoder_record", "read_export",
           "read_json", "read_versions", "resolve_device", "save_encoder_files", "save_model",
           "save_tensors", "text_encoder_path", "text_feature_dim", "text_in_loop",
           "uses_image", "versions", "write_config", "write_json"]
