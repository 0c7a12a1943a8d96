"""`explain: true` on `POST /v1/extract`: token offsets, the global visual gate per token, the
regional gate and image attention as a 7x7 grid, nulls where a model has no such gate; and the
try page's static files served by `mjave serve`. A tiny real model (tests/conftest.py)."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from mjave.serving.app import ServeConfig, create_app  # noqa: E402

TEXT = "red shirt with blue shoes, slim fit"


def image_b64(colour=(220, 30, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (224, 224), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def served(tiny_web_model):
    from mjave.inference.extractor import Extractor
    folder, data = tiny_web_model
    extractor = Extractor.load(folder, device="cpu")
    with TestClient(create_app(extractor, ServeConfig(image_root=str(data)))) as c:
        yield c, extractor


@pytest.fixture(scope="module")
def text_only(tiny_web_model, tmp_path_factory):
    from mjave.inference.extractor import Extractor
    from mjave.testing import train_tiny_mjave
    folder, _ = train_tiny_mjave(tmp_path_factory.mktemp("tiny-text"), use_image=False,
                                 epochs=1)
    with TestClient(create_app(Extractor.load(folder, device="cpu"))) as c:
        yield c


def check_tokens(text: str, tokens: list[dict]) -> None:
    assert tokens, "no tokens"
    last = 0
    for t in tokens:
        assert text[t["begin"]:t["end"]] == t["text"] and t["begin"] >= last
        last = t["end"]


def test_explain_returns_offsets_and_gates(served):
    c, extractor = served
    plain = c.post("/v1/extract", json={"text": TEXT, "image_base64": image_b64()})
    r = c.post("/v1/extract", json={"text": TEXT, "image_base64": image_b64(), "explain": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "explain" not in plain.json()
    assert body["values"] == plain.json()["values"]  # explaining changes no prediction
    ex = body["explain"]
    check_tokens(TEXT, ex["tokens"])
    assert [t["text"] for t in ex["tokens"]][:3] == ["red", "shirt", "with"]
    assert all(0 < t["global_gate"] < 1 for t in ex["tokens"])  # a sigmoid, averaged
    assert ex["grid"] == [7, 7]
    for name in ("regional_gate", "image_attention"):
        grid = ex[name]
        assert len(grid) == 7 and all(len(row) == 7 for row in grid)
        assert all(isinstance(v, float) for row in grid for v in row)
    assert all(0 < v < 1 for row in ex["regional_gate"] for v in row)
    assert set(ex["attribute_probs"]) == {"Color", "Fit"}
    python = extractor.predict(TEXT, image=base64.b64decode(image_b64()), explain=True)
    got = python["explain"]["tokens"]
    assert [(t["begin"], t["end"]) for t in got] == [(t["begin"], t["end"]) for t in ex["tokens"]]
    assert [t["global_gate"] for t in got] == \
        pytest.approx([t["global_gate"] for t in ex["tokens"]], abs=1e-6)


def test_explain_per_item_or_for_the_whole_batch(served):
    c, _ = served
    items = [{"text": TEXT, "image_path": "images/p0.png"}, {"text": "blue shoes"}]
    r = c.post("/v1/extract", json={"items": items, "explain": True}).json()["items"]
    assert all("explain" in x for x in r)
    items[1]["explain"] = True
    r = c.post("/v1/extract", json={"items": items}).json()["items"]
    assert "explain" not in r[0] and "explain" in r[1]


def test_without_an_image_the_region_maps_are_null(served):
    c, _ = served
    body = c.post("/v1/extract", json={"text": TEXT, "explain": True}).json()
    assert "zero image features" in body["warning"]
    ex = body["explain"]
    assert ex["regional_gate"] is None and ex["image_attention"] is None and ex["grid"] is None
    assert all(isinstance(t["global_gate"], float) for t in ex["tokens"])


def test_text_only_models_have_null_gates(text_only):
    body = text_only.post("/v1/extract", json={"text": TEXT, "explain": True}).json()
    ex = body["explain"]
    check_tokens(TEXT, ex["tokens"])
    assert all(t["global_gate"] is None for t in ex["tokens"])  # present, and null
    assert ex["regional_gate"] is None and ex["image_attention"] is None


def test_long_texts_are_explained_across_windows(served):
    c, extractor = served
    text = " ".join(f"red shirt number {i} with blue shoes" for i in range(40))
    assert len(extractor._aligner.encode_text(text)) > extractor.max_length  # windowed
    ex = c.post("/v1/extract", json={"text": text, "explain": True,
                                     "image_base64": image_b64()}).json()["explain"]
    check_tokens(text, ex["tokens"])
    words = text.split()
    assert "".join(t["text"] for t in ex["tokens"]) == "".join(words)  # every piece, once
    assert ex["grid"] == [7, 7]


def test_the_schema_documents_explain(served):
    c, _ = served
    schemas = c.get("/openapi.json").json()["components"]["schemas"]
    assert {"ExplainOut", "TokenOut"} <= set(schemas)
    assert "explain" in schemas["ExtractItem"]["properties"]


def test_the_try_page_is_served_with_its_static_files(served):
    c, _ = served
    page = c.get("/")
    assert page.status_code == 200 and 'id="rendered"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("try.js", "text/javascript"), ("common.js", "text/javascript"),
                       ("mjave.css", "text/css")):
        r = c.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert c.get("/static/app.py").status_code == 404
    assert c.get("/static/../app.py").status_code == 404
    assert c.get("/?name=../app.py").status_code == 200  # pages take no parameters
