"""Label Studio: its JSON export read into Records, Records and predictions written as its
tasks and read back, and the labelling config the tasks name. The fixtures are shaped like the
documented export (tasks with data, annotations, predictions and Label Studio's bookkeeping)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mjave import __version__
from mjave.data.errors import DataError, RowIssues
from mjave.data.formats.labelstudio import (LABELS_NAME, LOCAL_FILES, TEXT_NAME, choose_annotation,
                                    image_path, labeling_config, labelstudio_rows,
                                    read_labelstudio, record_attributes, utf16_to_index,
                                    write_labelstudio_tasks)
from mjave.data.records import Record, Span

FIXTURES = Path(__file__).parent / "fixtures" / "labelstudio"
EXPORT = FIXTURES / "export.json"

T1 = "Nike Air Max 90 running shoes, black"
T2 = "Veste en laine mérinos 🧥 couleur bleu marine, taille M"
T4 = "华为 Mate 60 Pro 手机 512GB 雅川青"


def spans(text: str, *pairs: tuple[str, str]) -> list[Span]:
    """Spans of (attribute, value) pairs, each at the value's first place in the text."""
    out = []
    for attr, value in pairs:
        b = text.index(value)
        out.append(Span(b, b + len(value), attr, value))
    return sorted(out, key=lambda s: (s.begin, s.end, s.attr))


EXPECTED = [
    # The latest non-cancelled annotation (12), not the older one (11) nor the cancelled (13).
    Record("p1", T1, spans(T1, ("Brand", "Nike"), ("Model", "Air Max 90"), ("Color", "black")),
           category="shoes", image="images/p1.jpg", extra={"brand_hint": "Nike"}),
    # No data.id: the task id. The ground-truth annotation (21) wins over a later one (22);
    # offsets are code points past the emoji.
    Record("2", T2, spans(T2, ("Material", "laine mérinos"), ("Color", "bleu marine"),
                          ("Size", "M")), image="upload/7/5d5f2c8a-veste.jpg"),
    # Task 3 has no annotation, task 5 only a cancelled one: both skipped. The choices result
    # of task 4 is not a span.
    Record("p4", T4, spans(T4, ("Brand", "华为"), ("Model", "Mate 60 Pro"),
                          ("Storage", "512GB"), ("Color", "雅川青")), category="phones"),
]


def read(path: Path, **kw) -> tuple[list[Record], RowIssues]:
    issues = RowIssues()
    return list(read_labelstudio(path, issues=issues, **kw)), issues


# ------------------------------------------------------------------ reading the export

def test_export_reads_the_chosen_annotations_as_records():
    records, issues = read(EXPORT)
    assert records == EXPECTED
    assert issues.rows_read == 5
    assert issues.reasons() == {"no annotation": 2}
    assert "skipped 2 of 5 rows (2 x no annotation)" in issues.summary()
    assert sorted(e.line for e in issues.skipped) == [e.line for e in issues.skipped]
    assert all(str(EXPORT) in str(e) for e in issues.skipped)


def test_unannotated_tasks_can_be_kept_without_spans():
    records, issues = read(EXPORT, unannotated="keep")
    assert [r.id for r in records] == ["p1", "2", "p3", "p4", "p5"]
    assert records[2] == Record("p3", "Plain cotton t-shirt")
    assert records[4].spans == []   # its only annotation was cancelled
    assert not issues.skipped


def test_rows_without_a_tally_make_an_unannotated_task_a_row_error():
    rows = list(labelstudio_rows(EXPORT))
    assert len(rows) == 5
    with pytest.raises(DataError) as e:
        rows[2][1]()
    assert e.value.reason == "no annotation" and "task 3" in str(e.value)


def test_choose_annotation_prefers_ground_truth_then_latest():
    a = {"id": 1, "updated_at": "2024-01-02T00:00:00Z"}
    b = {"id": 2, "updated_at": "2024-01-03T00:00:00Z"}
    gt = {"id": 3, "updated_at": "2024-01-01T00:00:00Z", "ground_truth": True}
    cancelled = {"id": 4, "updated_at": "2024-02-01T00:00:00Z", "was_cancelled": True}
    assert choose_annotation([a, b, cancelled]) == (1, b)
    assert choose_annotation([a, gt, b]) == (1, gt)
    assert choose_annotation([cancelled]) is None
    assert choose_annotation([]) is None
    assert choose_annotation([{"id": 5}, {"id": 6}]) == (1, {"id": 6})  # list order last


def test_utf16_offsets_of_older_versions_are_converted():
    records, _ = read(FIXTURES / "legacy_utf16.json")
    text = "🔥 Sale: Apple iPhone 15 128GB"
    assert records == [Record("u1", text, spans(text, ("Brand", "Apple"),
                                                ("Storage", "128GB")))]
    assert utf16_to_index("🔥x", 2) == 1 and utf16_to_index("🔥x", 1) is None


@pytest.mark.parametrize("url, path", [
    ("/data/local-files/?d=images/p1.jpg", "images/p1.jpg"),
    ("http://localhost:8080/data/local-files/?d=dir%20a/p%2B1.jpg", "dir a/p+1.jpg"),
    ("/data/upload/7/5d5f2c8a-veste.jpg", "upload/7/5d5f2c8a-veste.jpg"),
    ("https://cdn.example.com/p/1.jpg", "https://cdn.example.com/p/1.jpg"),
    ("s3://bucket/p/1.jpg", "s3://bucket/p/1.jpg"),
    ("images/p1.jpg", "images/p1.jpg"),
])
def test_image_urls_keep_their_file_part(url: str, path: str):
    assert image_path(url) == path


def test_a_misaligned_value_is_an_error_naming_the_task_and_field():
    with pytest.raises(DataError) as e:
        list(read_labelstudio(FIXTURES / "misaligned.json"))
    err = e.value
    assert err.field == "annotations[0].result[1].value.text"
    assert err.reason == "value mismatch"
    assert "task 10" in str(err) and "'whit'" in str(err)
    assert err.path == str(FIXTURES / "misaligned.json") and err.line is not None


def test_lenient_reading_skips_and_counts_the_misaligned_task():
    issues = RowIssues()
    records = list(read_labelstudio(FIXTURES / "misaligned.json", strict=False, issues=issues))
    assert [r.id for r in records] == ["m0", "m2"]
    assert issues.rows_read == 3 and issues.reasons() == {"value mismatch": 1}
    with pytest.raises(ValueError):
        read_labelstudio(FIXTURES / "misaligned.json", strict=False)


def write_export(tmp_path: Path, tasks: list) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


def labels(start: int, end: int, text: str | None, attrs: list, to_name: str = "text") -> dict:
    value = {"start": start, "end": end, "labels": attrs}
    if text is not None:
        value["text"] = text
    return {"id": "x", "from_name": "label", "to_name": to_name, "type": "labels", "value": value}


@pytest.mark.parametrize("result, field, reason", [
    (labels(0, 99, "Nike", ["Brand"]), "annotations[0].result[0].value.end",
     "span out of range"),
    (labels(0, 4.0, "Nike", ["Brand"]), "annotations[0].result[0].value.end",
     "non-int offset"),
    (labels(0, 4, "Nike", []), "annotations[0].result[0].value.labels", "missing attr"),
])
def test_bad_results_name_their_field(tmp_path: Path, result: dict, field: str, reason: str):
    path = write_export(tmp_path, [{"id": 7, "data": {"text": "Nike shoes"},
                                    "annotations": [{"result": [result]}]}])
    with pytest.raises(DataError) as e:
        list(read_labelstudio(path))
    assert (e.value.field, e.value.reason) == (field, reason)
    assert "task 7" in str(e.value) and e.value.line == 1


def test_several_labels_text_key_and_a_second_text(tmp_path: Path):
    two = labels(0, 4, None, ["Brand", "Manufacturer"])   # no value.text: offsets trusted
    path = write_export(tmp_path, [{"id": 1, "data": {"title": "Nike shoes"},
                                    "annotations": [{"result": [two]}]}])
    records, _ = read(path, text_key="title")
    assert records[0].spans == [Span(0, 4, "Brand", "Nike"), Span(0, 4, "Manufacturer", "Nike")]
    other = labels(5, 10, "shoes", ["Type"], to_name="description")
    path = write_export(tmp_path, [{"id": 1, "data": {"text": "Nike shoes"},
                                    "annotations": [{"result": [two, other]}]}])
    with pytest.raises(DataError, match="more than one text") as e:
        list(read_labelstudio(path))
    assert e.value.reason == "several texts"
    records, _ = read(path, to_name="text")
    assert [s.attr for s in records[0].spans] == ["Brand", "Manufacturer"]


def test_a_file_that_is_not_a_task_array_fails_at_once(tmp_path: Path):
    path = tmp_path / "x.json"
    path.write_text('{"data": {}}')
    with pytest.raises(DataError, match="JSON array of tasks"):
        list(read_labelstudio(path))
    path.write_text('[{"id": 1, "data": {"text": "a"}, "annotations": []},\n {"id": ')
    with pytest.raises(DataError, match="invalid JSON") as e:
        list(read_labelstudio(path, strict=False, issues=RowIssues()))
    assert e.value.line == 2
    with pytest.raises(DataError, match="duplicate id"):
        list(read_labelstudio(write_export(tmp_path, [
            {"id": 1, "data": {"id": "a", "text": "x"}, "annotations": [{"result": []}]},
            {"id": 2, "data": {"id": "a", "text": "y"}, "annotations": [{"result": []}]}])))


# ------------------------------------------------------------------ writing tasks

def test_records_written_as_tasks_read_back_the_same(tmp_path: Path):
    out = tmp_path / "tasks.json"
    issues = write_labelstudio_tasks(EXPECTED, out)
    assert not issues.skipped and issues.rows_read == 3
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert all("annotations" in t and "predictions" not in t for t in tasks)
    assert tasks[0]["data"] == {"text": T1, "id": "p1", "category": "shoes",
                                "image": "images/p1.jpg", "brand_hint": "Nike"}
    result = tasks[0]["annotations"][0]["result"]
    assert {(r["from_name"], r["to_name"], r["type"]) for r in result} == {
        (LABELS_NAME, TEXT_NAME, "labels")}
    assert len({r["id"] for r in result}) == len(result)
    assert "🧥" in out.read_text(encoding="utf-8")   # unicode kept as is
    records, _ = read(out)
    assert records == EXPECTED


def test_image_prefix_makes_local_files_urls_that_read_back_as_paths(tmp_path: Path):
    out = tmp_path / "tasks.json"
    record = Record("a", "Red hat", [Span(0, 3, "Color", "Red")], image="img dir/a.jpg")
    write_labelstudio_tasks([record], out, image_prefix=LOCAL_FILES)
    task = json.loads(out.read_text())[0]
    assert task["data"]["image"] == "/data/local-files/?d=img%20dir/a.jpg"
    assert read(out)[0] == [record]


PREDICTIONS = [
    {"id": "q1", "text": "Nike Air Max 90 running shoes, black", "category": "shoes",
     "attributes": [{"name": "Brand", "score": 0.97}, {"name": "Color", "score": 0.8}],
     "values": [{"attribute": "Brand", "value": "Nike", "begin": 0, "end": 4, "score": 0.95},
                {"attribute": "Color", "value": "black", "begin": 31, "end": 36,
                 "score": 0.61}]},
    {"id": "q2", "error": "row 2: the text is empty"},
    {"id": 3, "text": "Plain cotton t-shirt", "attributes": [], "values": []},
]


def test_predictions_become_scored_predictions(tmp_path: Path):
    out = tmp_path / "tasks.json"
    issues = write_labelstudio_tasks(PREDICTIONS, out, inputs=[tmp_path / "preds.jsonl"])
    assert issues.reasons() == {"error row": 1} and issues.rows_read == 3
    tasks = json.loads(out.read_text())
    assert [t["data"]["id"] for t in tasks] == ["q1", "3"]
    first = tasks[0]
    assert "annotations" not in first
    (prediction,) = first["predictions"]
    assert prediction["model_version"] == f"mjave {__version__}"
    assert prediction["score"] == pytest.approx(0.61)   # the least certain value
    assert [(r["value"]["labels"], r["value"]["text"], r["score"])
            for r in prediction["result"]] == [(["Brand"], "Nike", 0.95),
                                               (["Color"], "black", 0.61)]
    assert "score" not in tasks[1]["predictions"][0]    # nothing predicted
    assert tasks[1]["predictions"][0]["result"] == []
    # Predictions read back as Records (annotations not being there, keep them unlabelled).
    records, _ = read(out, unannotated="keep")
    assert [r.spans for r in records] == [[], []]


def test_records_with_scores_or_on_request_go_out_as_predictions(tmp_path: Path):
    out = tmp_path / "tasks.json"
    scored = Record("s", "Nike", [Span(0, 4, "Brand", "Nike", score=0.5)])
    write_labelstudio_tasks([scored, EXPECTED[0]], out, model_version="m-1")
    tasks = json.loads(out.read_text())
    assert tasks[0]["predictions"][0]["model_version"] == "m-1"
    assert "annotations" in tasks[1]
    write_labelstudio_tasks([EXPECTED[0]], out, as_="predictions")
    assert "predictions" in json.loads(out.read_text())[0]
    write_labelstudio_tasks([scored], out, as_="annotations")
    assert "annotations" in json.loads(out.read_text())[0]


def test_the_writer_never_overwrites_an_input_and_refuses_bad_items(tmp_path: Path):
    src = tmp_path / "export.json"
    src.write_text(EXPORT.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(DataError, match="overwrite the input") as e:
        write_labelstudio_tasks(read_labelstudio(src, issues=RowIssues()), tmp_path / "." /
                                "export.json", inputs=[src])
    assert e.value.reason == "same file"
    assert src.read_text(encoding="utf-8") == EXPORT.read_text(encoding="utf-8")
    out = tmp_path / "tasks.json"
    bad = Record("b", "Nike", [Span(0, 4, "Brand", "Nikd")])
    with pytest.raises(DataError, match="item 2") as e:
        write_labelstudio_tasks([EXPECTED[0], bad], out)
    assert e.value.reason == "value mismatch" and not out.exists()
    issues = write_labelstudio_tasks([EXPECTED[0], bad, EXPECTED[0]], out, strict=False)
    assert issues.reasons() == {"value mismatch": 1, "duplicate id": 1}
    assert len(json.loads(out.read_text())) == 1


# ------------------------------------------------------------------ labelling config

def test_config_lists_the_attributes_and_names_the_task_fields():
    records, _ = read(EXPORT)
    attributes, image = record_attributes(records)
    assert image is True
    xml = labeling_config(attributes + ['Size & "fit"', "<Sole>"], image=image)
    root = ET.fromstring(xml)
    assert root.tag == "View"
    (labels_tag,) = root.iter("Labels")
    assert [lab.get("value") for lab in labels_tag.iter("Label")] == [
        "Brand", "Color", "Material", "Model", "Size", "Storage", 'Size & "fit"', "<Sole>"]
    (text_tag,) = root.iter("Text")
    (image_tag,) = root.iter("Image")
    assert labels_tag.get("name") == LABELS_NAME and labels_tag.get("toName") == TEXT_NAME
    assert text_tag.get("name") == TEXT_NAME and text_tag.get("value") == "$text"
    assert image_tag.get("value") == "$image"


def test_config_names_match_the_written_tasks(tmp_path: Path):
    out = tmp_path / "tasks.json"
    write_labelstudio_tasks(EXPECTED[:1], out)
    root = ET.fromstring(labeling_config(["Brand", "Brand", "Color"], text_key="title"))
    assert not list(root.iter("Image"))
    (labels_tag,) = root.iter("Labels")
    assert [lab.get("value") for lab in labels_tag.iter("Label")] == ["Brand", "Color"]
    (text_tag,) = root.iter("Text")
    assert text_tag.get("value") == "$title"
    for r in json.loads(out.read_text())[0]["annotations"][0]["result"]:
        assert r["from_name"] == labels_tag.get("name")
        assert r["to_name"] == labels_tag.get("toName") == text_tag.get("name")
    with pytest.raises(ValueError):
        labeling_config([])
