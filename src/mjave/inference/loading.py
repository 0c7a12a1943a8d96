"""Build the tokenizer, aligner and network a run config describes, and load model folders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from mjave.data.schema import AttributeSchema
from mjave.data.tagging import TextAligner, Tokenizer
from mjave.encoders.features import EncoderConfig
from mjave.encoders import text as text_encoders
from mjave.model.config import ModelConfig
from mjave.model.registry import build_model
from mjave.model.network import TextImageModel
from mjave.training.checkpoint import load_model_files
from mjave.training.config import RunConfig


IMAGE_FEATURE_DIMS = {"efficientnet-lite0": 1280, "efficientnet-lite2": 1280,
                      "resnet50": 2048, "resnet101": 2048}


def image_feature_dim(name: str) -> int:
    return IMAGE_FEATURE_DIMS[name]


def hf_hidden_size(path) -> int:
    import json
    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    return int(config.get("hidden_size") or config["dim"])


def text_in_loop(encoder: EncoderConfig) -> bool:
    """True when the text encoder trains with the model (BiLSTM or fine-tuned BERT), so token
    states cannot be cached."""
    return encoder.text_kind == "bilstm" or encoder.fine_tune


def make_tokenizer(encoder: EncoderConfig) -> Tokenizer:
    return text_encoders.load_tokenizer(text_encoders.resolve_text_encoder_path(encoder.text_encoder),
                                        char_level=encoder.char_level)


def make_aligner(encoder: EncoderConfig, schema: AttributeSchema | None,
                 tokenizer: Tokenizer | None = None) -> TextAligner:
    return TextAligner(tokenizer or make_tokenizer(encoder), schema, max_length=encoder.max_length)


def make_text_encoder(encoder: EncoderConfig, tokenizer: Tokenizer) -> torch.nn.Module:
    """The in-loop text encoder (only called when `text_in_loop`)."""
    if encoder.text_kind == "bilstm":
        return text_encoders.BiLSTMTextEncoder(vocab_size=tokenizer.vocab_size,
                                               pad_id=tokenizer.pad_id)
    path = text_encoders.resolve_text_encoder_path(encoder.text_encoder)
    return text_encoders.HFTextEncoder.from_pretrained(path, fine_tune=True)


def text_feature_dim(encoder: EncoderConfig, text_module: torch.nn.Module | None) -> int:
    if text_module is not None:
        return int(text_module.hidden_size)
    return hf_hidden_size(text_encoders.resolve_text_encoder_path(encoder.text_encoder))


def build_network(config: RunConfig, schema: AttributeSchema, tokenizer: Tokenizer
                  ) -> tuple[TextImageModel, ModelConfig]:
    """The network for `config`, with the sizes the encoders and schema dictate filled in."""
    enc = config.encoder
    text_module = make_text_encoder(enc, tokenizer) if text_in_loop(enc) else None
    from mjave.model.registry import architecture_uses_image
    use_image = (config.model.use_image and enc.image_encoder != "none"
                 and architecture_uses_image(config.model.architecture))
    model_cfg = dataclasses.replace(
        config.model, num_attributes=schema.num_attributes, use_image=use_image,
        text_dim=text_feature_dim(enc, text_module),
        image_dim=image_feature_dim(enc.image_encoder) if use_image else config.model.image_dim)
    return TextImageModel(build_model(model_cfg), text_module), model_cfg


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
        tokenizer = make_tokenizer(config.encoder)
        net, model_cfg = build_network(config, schema, tokenizer)
        net.load_state_dict(weights)
        config = dataclasses.replace(config, model=model_cfg)
        dev = resolve_device(device)
        net.to(dev).eval()
        return cls(Path(folder), config, schema, net, make_aligner(config.encoder, schema, tokenizer),
                   dev)

    @property
    def uses_text_features(self) -> bool:
        return not text_in_loop(self.config.encoder)

    @property
    def uses_image(self) -> bool:
        return self.config.model.use_image
