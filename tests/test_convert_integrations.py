"""`mjave data convert` through the format registry for the ecosystem formats: a Label Studio
export in, predictions out as Label Studio tasks with their scores, spaCy DocBin both ways, and
`mjave data labelstudio-config` for a data file or a model folder."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mjave.cli.entry import main
from mjave.data.formats import read_records

FIXTURES = Path(__file__).parent / "fixtures" / "labelstudio"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_label_studio_export_converts_to_records_and_back(tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    assert main(["data", "convert", str(FIXTURES / "export.json"), str(records),
                 "--from", "labelstudio"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 5 rows (2 x no annotation)" in err   # strict, yet counted, not fatal
    got, _ = read_records(records)
    assert [r.id for r in got] == ["p1", "2", "p4"]
    tasks = tmp_path / "tasks.json"
    assert main(["data", "convert", str(records), str(tasks), "--to", "labelstudio"]) == 0
    written = json.loads(tasks.read_text())
    assert all("annotations" in t and "predictions" not in t for t in written)  # gold spans
    back, _ = read_records(tasks, "labelstudio")
    assert back == got


def test_a_bad_label_studio_task_names_its_line_and_field(tmp_path, capsys):
    assert main(["data", "convert", str(FIXTURES / "misaligned.json"),
                 str(tmp_path / "out.jsonl"), "--from", "labelstudio"]) == 1
    err = capsys.readouterr().err
    assert "misaligned.json:" in err and ".value.text" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_predictions_become_label_studio_tasks_with_scores(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    rows = [{"id": "a", "text": "red cotton shirt", "attributes": [{"name": "Color", "score": 0.9}],
             "values": [{"attribute": "Color", "value": "red", "begin": 0, "end": 3,
                         "score": 0.875},
                        {"attribute": "Material", "value": "cotton", "begin": 4, "end": 10,
                         "score": 0.5}]},
            {"id": "b", "text": "blue jeans", "attributes": [], "values": []},
            {"id": "c", "error": "image not found", "text": "x"}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks.json"
    assert main(["data", "convert", str(preds), str(tasks), "--from", "predictions",
                 "--to", "labelstudio"]) == 0
    assert "1 x error row" in capsys.readouterr().err
    first, second = json.loads(tasks.read_text())
    (pred,) = first["predictions"]
    assert pred["score"] == 0.5                      # the task's least certain value
    assert [(r["value"]["labels"], r["value"]["start"], r["score"]) for r in pred["result"]] == [
        (["Color"], 0, 0.875), (["Material"], 4, 0.5)]
    assert first["data"] == {"text": "red cotton shirt", "id": "a"}
    assert second["data"]["id"] == "b" and second["annotations"] == [{"result": []}]


def test_spacy_docbin_both_ways_through_convert(tmp_path):
    pytest.importorskip("spacy")
    src = FIXTURES / "export.json"
    records = tmp_path / "r.jsonl"
    assert main(["data", "convert", str(src), str(records), "--from", "labelstudio"]) == 0
    assert main(["data", "convert", str(records), str(tmp_path / "r.spacy")]) == 0
    assert main(["data", "convert", str(tmp_path / "r.spacy"), str(tmp_path / "back.conll")]) == 0
    want, _ = read_records(records)
    got, _ = read_records(tmp_path / "r.spacy")
    assert got == want
    conll, _ = read_records(tmp_path / "back.conll")
    assert [[(s.attr, s.value) for s in r.spans] for r in conll] == [
        [(s.attr, s.value) for s in r.spans] for r in want]


def test_labelstudio_config_from_data_and_from_a_model_folder(tmp_path, capsys):
    records = tmp_path / "r.jsonl"
    assert main(["data", "convert", str(FIXTURES / "export.json"), str(records),
                 "--from", "labelstudio"]) == 0
    capsys.readouterr()
    assert main(["data", "labelstudio-config", str(records)]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    labels = [e.get("value") for e in root.iter("Label")]
    assert labels == sorted({s.attr for r in read_records(records)[0] for s in r.spans})
    assert root.find("Image") is not None            # p1 has an image
    out = tmp_path / "config.xml"
    assert main(["data", "labelstudio-config", str(records), "-o", str(out), "--no-image"]) == 0
    assert ET.fromstring(out.read_text()).find("Image") is None
    assert main(["data", "labelstudio-config", str(records), "-o", str(records)]) == 1  # input
    capsys.readouterr()

    from mjave.config import RunConfig, save
    from mjave.data.schema import AttributeSchema
    model = tmp_path / "model"
    model.mkdir()
    (model / "schema.json").write_text(json.dumps(AttributeSchema(["Color", "Size"]).to_json()))
    save(RunConfig(), model / "config.json")
    assert main(["data", "labelstudio-config", str(model)]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    assert [e.get("value") for e in root.iter("Label")] == ["Color", "Size"]
