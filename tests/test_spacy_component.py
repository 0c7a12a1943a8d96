"""The `mjave` spaCy component (`mjave.integrations.spacy`) and the DocBin <-> Records
conversion (`mjave.data.formats.spacy_docbin`), on the tiny models of tests/test_extractor.py."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

spacy = pytest.importorskip("spacy")

from mjave.data.errors import DataError  # noqa: E402
from mjave.data.records import Record, Span  # noqa: E402
from mjave.data.formats.spacy_docbin import (docbin_to_records, read_docbin,  # noqa: E402
                                     records_to_docbin, spacy_module, unaligned_key,
                                     write_docbin)
# the session's tiny models and their text Extractor, shared with tests/test_extractor.py
from test_extractor import text_extractor, tiny_models, valid_rows  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOL = 1e-5   # scores of one text in batches of other shapes differ by float rounding only


@pytest.fixture(scope="module")
def nlp(tiny_models):
    """A blank English pipeline with the component built by its factory from the folder."""
    nlp = spacy.blank("en")
    nlp.add_pipe("mjave", config={"model": str(tiny_models.text_model), "device": "cpu",
                                  "batch_size": 4})
    return nlp


@pytest.fixture(scope="module")
def texts(tiny_models) -> list[str]:
    return [r["text"] for r in valid_rows(tiny_models)] + [
        "Green shirt with red shoes, slim fit. " * 10,      # windowed
        "blue-shirt,slim fit!"]                              # values inside spaCy tokens


def spans_of(doc, key: str = "mjave") -> list[tuple[str, int, int, float]]:
    return sorted((s.label_, s.start_char, s.end_char, s._.score) for s in doc.spans[key])


def assert_same_spans(a, b) -> None:
    assert [x[:3] for x in a] == [x[:3] for x in b]
    for x, y in zip(a, b):
        assert x[3] == pytest.approx(y[3], abs=TOL)


class Recorder:
    """An Extractor stand-in that records its items and returns fixed values."""

    def __init__(self, values: list[dict] = ()):
        self.items: list[dict] = []
        self.values = list(values)

    def predict_batch(self, items):
        self.items += items
        return [{"attributes": [{"name": "Color", "score": 0.9}], "values": self.values}
                for _ in items]


def value(attr: str, begin: int, end: int, text: str, score: float) -> dict:
    return {"attribute": attr, "value": text[begin:end], "begin": begin, "end": end,
            "score": score}


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------


def test_component_spans_are_the_extractor_predictions(nlp, text_extractor, texts):
    predicted = text_extractor.predict_batch(texts)
    assert sum(len(p["values"]) for p in predicted) >= len(texts)   # not vacuous
    exact = 0
    for text, result in zip(texts, predicted):
        doc = nlp(text)
        assert doc.text == text
        spans = {(s.label_, s.start_char, s.end_char): s for s in doc.spans["mjave"]}
        assert len(spans) == len(result["values"])   # distinct tokens here: nothing merged
        for v in result["values"]:
            tokens = doc.char_span(v["begin"], v["end"], alignment_mode="expand")
            span = spans[(v["attribute"], tokens.start_char, tokens.end_char)]
            exact += (span.start_char, span.end_char) == (v["begin"], v["end"])
            assert span.start_char <= v["begin"] < v["end"] <= span.end_char
            assert span._.score == pytest.approx(v["score"], abs=TOL)
        assert [a["name"] for a in doc.user_data["mjave:attributes"]] == \
            [a["name"] for a in result["attributes"]]
        assert unaligned_key() not in doc.user_data
    assert exact >= len(texts)


def test_pipe_equals_call_and_blank_docs_get_no_spans(nlp, texts):
    many = texts + ["   ", ""] + texts[:3]
    piped = list(nlp.pipe(many, batch_size=3))
    assert [d.text for d in piped] == many
    for doc, text in zip(piped, many):
        assert_same_spans(spans_of(doc), spans_of(nlp(text)))
    for blank in piped[len(texts):len(texts) + 2]:
        assert spans_of(blank) == [] and blank.user_data["mjave:attributes"] == []


def test_category_and_image_come_from_the_doc(tiny_models):
    from mjave import Extractor
    from mjave.integrations.spacy import MjaveComponent
    recorder = Recorder()
    component = MjaveComponent(recorder, category="shirts", batch_size=2)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in ("red shirt", "blue shoes", "slim fit")]
    docs[1]._.category = "shoes"
    docs[2]._.image = "p1.png"
    list(component.pipe(docs))
    assert recorder.items == [{"text": "red shirt", "image": None, "category": "shirts"},
                              {"text": "blue shoes", "image": None, "category": "shoes"},
                              {"text": "slim fit", "image": "p1.png", "category": "shirts"}]
    # an image model reads doc._.image, as Extractor.predict reads `image=`
    image_model = Extractor.load(tiny_models.image_model, device="cpu", batch_size=4)
    component = MjaveComponent(image_model)
    row = valid_rows(tiny_models)[0]
    image = str(tiny_models.data / row["image"])
    doc = nlp.make_doc(row["text"])
    doc._.image = image
    expected = image_model.predict(row["text"], image=image)["values"]
    assert expected
    assert_same_spans(spans_of(component(doc)),
                      sorted((v["attribute"], v["begin"], v["end"], v["score"])
                             for v in expected))
    with pytest.raises(DataError, match="image"):   # missing_image="error": no silent guess
        component(nlp.make_doc(row["text"]))


def test_values_off_token_boundaries_widen_merge_or_are_kept_aside():
    from mjave.integrations.spacy import MjaveComponent
    text = "red  slim-fitting shirt"
    values = [value("Color", 0, 3, text, 0.9),          # a token
              value("Fit", 5, 7, text, 0.4),            # inside "slim": widens to it
              value("Fit", 7, 9, text, 0.6),            # also inside "slim": merged, max score
              value("Odd", 3, 4, text, 0.7)]            # whitespace after "red": no token
    component = MjaveComponent(Recorder(values), spans_key="attrs")
    doc = component(spacy.blank("en")(text))
    assert spans_of(doc, "attrs") == [("Color", 0, 3, 0.9), ("Fit", 5, 9, 0.6)]
    assert doc.user_data["attrs:unaligned"] == [values[3]]
    assert component.unaligned_values == 1
    assert doc.user_data["attrs:attributes"] == [{"name": "Color", "score": 0.9}]
    # a second run replaces the first run's annotations
    component.extractor.values = values[:1]
    doc = component(doc)
    assert spans_of(doc, "attrs") == [("Color", 0, 3, 0.9)]
    assert "attrs:unaligned" not in doc.user_data


def test_the_entry_point_finds_the_factory_without_importing_mjave(tiny_models, nlp):
    text = "red shirt with blue shoes, slim fit"
    code = (
        "import json, sys, spacy\n"
        "assert not any(m == 'mjave' or m.startswith('mjave.') for m in sys.modules)\n"
        "nlp = spacy.blank('en')\n"
        # spaCy loads every factory's entry point with each pipeline: that stays light
        "assert 'mjave.inference.extractor' not in sys.modules\n"
        f"nlp.add_pipe('mjave', config={{'model': {str(tiny_models.text_model)!r}, "
        "'device': 'cpu'})\n"
        f"doc = nlp({text!r})\n"
        "print(json.dumps([[s.label_, s.start_char, s.end_char, s._.score]"
        " for s in doc.spans['mjave']]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tiny_models.data)
    assert out.returncode == 0, out.stderr
    got = sorted(tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1]))
    assert got and [g[:3] for g in got] == [s[:3] for s in spans_of(nlp(text))]


# --------------------------------------------------------------------------------------------
# DocBin conversion
# --------------------------------------------------------------------------------------------


def sample_records() -> list[Record]:
    text = "red  slim-fitting shirt, 3,5kg"
    return [
        Record("s1", text, [Span(0, 3, "Color", "red", 0.9), Span(5, 9, "Fit", "slim"),
                            Span(5, 17, "Style", "slim-fitting", 0.25),   # overlapping
                            Span(10, 13, "Part", "fit"),                  # inside a token
                            Span(3, 4, "Odd", " "),                       # whitespace only
                            Span(25, 28, "Weight", "3,5")],
               cid="p1", category="shirts", image="images/p1.png",
               extra={"absent_attrs": ["Brand"], "n": 2}),
        Record("s2", "größe XL", [Span(6, 8, "Size", "XL")]),
        Record("s3", "no values here", []),
    ]


def sorted_spans(record: Record) -> Record:
    return Record(record.id, record.text, sorted(record.spans, key=lambda s: (s.begin, s.end,
                                                                             s.attr)),
                  record.cid, record.category, record.image, record.extra)


def test_docbin_round_trip_keeps_texts_spans_ids_categories_and_scores(tmp_path):
    records = sample_records()
    path = tmp_path / "train.spacy"
    assert write_docbin(records, path) == 3
    assert not (tmp_path / "train.spacy.tmp").exists()
    back = read_docbin(path)
    assert back == [sorted_spans(r) for r in records]
    assert [s.score for s in back[0].spans] == [0.9, None, None, 0.25, None, None]
    # in memory, with a pipeline's own tokenizer
    nlp = spacy.blank("en")
    docbin = records_to_docbin(records, nlp)
    docs = list(docbin.get_docs(nlp.vocab))
    assert docs[0]._.category == "shirts" and docs[0]._.id == "s1"
    assert [s.text for s in docs[0].spans["mjave"]] == ["red", "slim", "slim-fitting", "fit",
                                                        "3,5"]
    assert docs[0].user_data[unaligned_key()][0]["attribute"] == "Odd"
    assert docbin_to_records(docbin, nlp.vocab) == back


def test_docbin_of_other_tools_reads_entities_and_numbers_docs(tmp_path):
    nlp = spacy.blank("en")
    doc = nlp("Acme red shirt")
    doc.ents = [doc.char_span(5, 8, label="Color")]
    other = spacy.tokens.DocBin(docs=[doc, nlp("plain")])
    records = docbin_to_records(other, nlp.vocab)
    assert records == [Record("1", "Acme red shirt", [Span(5, 8, "Color", "red")]),
                       Record("2", "plain", [])]
    # a spans key present (even empty) wins over the entities
    doc.spans["mjave"] = []
    assert docbin_to_records(spacy.tokens.DocBin(docs=[doc]), nlp.vocab)[0].spans == []


def test_component_output_converts_to_the_predicted_records(nlp, texts):
    docbin = spacy.tokens.DocBin(docs=nlp.pipe(texts[:4]), store_user_data=True)
    records = docbin_to_records(docbin, nlp.vocab)
    assert [r.id for r in records] == ["1", "2", "3", "4"]
    for record, text in zip(records, texts):
        assert record.text == text
        spans = sorted((s.attr, s.begin, s.end, s.score) for s in record.spans)
        assert_same_spans(spans, spans_of(nlp(text)))


def test_writing_never_overwrites_the_input_and_bad_files_are_data_errors(tmp_path):
    source = tmp_path / "data.spacy"
    write_docbin(sample_records(), source)
    before = source.read_bytes()
    with pytest.raises(DataError, match="overwrite the input"):
        write_docbin(read_docbin(source), source, inputs=[source])
    assert source.read_bytes() == before
    bad = tmp_path / "bad.spacy"
    bad.write_text("not a docbin", encoding="utf-8")
    with pytest.raises(DataError, match="not a spaCy DocBin"):
        read_docbin(bad)
    with pytest.raises(DataError, match="cannot read"):
        read_docbin(tmp_path / "absent.spacy")


def test_missing_spacy_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "spacy" or m.startswith("spacy.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "mjave.integrations.spacy", raising=False)
    with pytest.raises(ImportError, match=r"mjave\[spacy\]"):
        spacy_module()
    with pytest.raises(ImportError, match=r"mjave\[spacy\]"):
        importlib.import_module("mjave.integrations.spacy")
    with pytest.raises(ImportError, match=r"mjave\[spacy\]"):
        write_docbin(sample_records(), Path("never-written.spacy"))
