"""AttributeSchema: attribute names <-> ids, the fixed BIO tag layout, and its JSON file."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mjave.data.errors import DataError
from mjave.data.records import Record, Span
from mjave.data.schema import AttributeSchema


def records() -> list[Record]:
    return [
        Record("1", "红色棉衣", [Span(0, 2, "颜色", "红色"), Span(2, 3, "材质", "棉")]),
        Record("2", "red cotton tee", [Span(0, 3, "color", "red"),
                                       Span(4, 10, "material", "cotton")]),
        Record("3", "cotton", [Span(0, 6, "material", "cotton")]),
        Record("4", "nothing here"),
    ]


def test_from_records_is_sorted_and_unique():
    schema = AttributeSchema.from_records(records())
    assert schema.attributes == ("color", "material", "材质", "颜色")
    assert schema.num_attributes == 4 and schema.num_tags == 9
    assert "color" in schema and "colour" not in schema
    # deterministic: order of records does not change ids
    assert AttributeSchema.from_records(reversed(records())) == schema
    assert AttributeSchema.from_records([]).tags == ["O"]


def test_tag_layout():
    schema = AttributeSchema(("b", "a", "c"))  # ids follow the given order, not the name
    assert schema.tags == ["O", "B-b", "I-b", "B-a", "I-a", "B-c", "I-c"]
    for i, attr in enumerate(schema.attributes):
        assert schema.attr_id(attr) == i
        assert schema.begin_tag(attr) == 1 + 2 * i
        assert schema.inside_tag(attr) == 2 + 2 * i
        assert schema.tag_name(1 + 2 * i) == f"B-{attr}"
        assert schema.tag_name(2 + 2 * i) == f"I-{attr}"
    assert schema.tag_id("O") == 0 and schema.tag_name(0) == "O"


@given(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=12))
def test_tag_ids_and_names_are_inverse(attrs):
    schema = AttributeSchema(tuple(attrs))
    assert len(schema.tags) == schema.num_tags
    for i, tag in enumerate(schema.tags):
        assert schema.tag_id(tag) == i
    assert AttributeSchema.from_json(json.loads(json.dumps(schema.to_json()))) == schema


def test_unknown_attribute_error_names_it():
    schema = AttributeSchema.from_records(records())
    with pytest.raises(DataError, match="'colour'") as err:
        schema.attr_id("colour")
    assert err.value.reason == "unknown attribute" and err.value.field == "attr"
    assert "color" in str(err.value)  # says what the model does know
    with pytest.raises(DataError, match="'colour'"):
        schema.tag_id("B-colour")
    with pytest.raises(DataError, match="not a BIO tag"):
        schema.tag_id("X-color")


def test_duplicate_attributes_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        AttributeSchema(("a", "b", "a"))


def test_save_load_round_trip(tmp_path):
    schema = AttributeSchema.from_records(records())
    path = tmp_path / "schema.json"
    schema.save(path)
    loaded = AttributeSchema.load(path)
    assert loaded == schema and loaded.tags == schema.tags
    assert loaded.begin_tag("颜色") == schema.begin_tag("颜色")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "mjave.schema/1" and data["tags"] == schema.tags
    assert "颜色" in path.read_text(encoding="utf-8")  # kept readable, not \\u-escaped


def test_tags_may_be_omitted(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"attributes": ["a", "b"]}), encoding="utf-8")
    assert AttributeSchema.load(path) == AttributeSchema(("a", "b"))


@pytest.mark.parametrize("tamper", [
    lambda d: d["tags"].reverse(),
    lambda d: d["tags"].pop(),
    lambda d: d["attributes"].reverse(),
    lambda d: d["tags"].__setitem__(1, "B-other"),
])
def test_tampered_tags_raise_data_error(tmp_path, tamper):
    path = tmp_path / "schema.json"
    AttributeSchema(("color", "material")).save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    tamper(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match="tags") as err:
        AttributeSchema.load(path)
    assert err.value.path == str(path) and str(path) in str(err.value)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"attributes": "color"}', ""])
def test_unreadable_schema_raises_data_error(tmp_path, content):
    path = tmp_path / "schema.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        AttributeSchema.load(path)
    assert str(path) in str(err.value)


def test_missing_schema_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read schema"):
        AttributeSchema.load(tmp_path / "absent.json")


def test_duplicate_attributes_in_file_raise_located_data_error(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"attributes": ["a", "a"]}), encoding="utf-8")
    with pytest.raises(DataError) as err:
        AttributeSchema.load(path)
    assert str(path) in str(err.value)


def test_non_string_attributes_in_file_raise_located_data_error(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"attributes": ["a", 1]}), encoding="utf-8")
    with pytest.raises(DataError, match="non-empty strings") as err:
        AttributeSchema.load(path)
    assert str(path) in str(err.value)


def test_schema_keeps_attributes_per_category_and_round_trips(tmp_path):
    from mjave.data.records import Record, Span
    recs = [Record("a", "red tea", [Span(0, 3, "Color", "red")], category="Tea"),
            Record("b", "nike shoe", [Span(0, 4, "Brand", "nike")], category="Shoes"),
            Record("c", "blue shoe", [Span(0, 4, "Color", "blue")], category="Shoes")]
    schema = AttributeSchema.from_records(recs)
    assert schema.allowed_attributes("Shoes") == ("Brand", "Color")
    assert schema.allowed_attributes("Tea") == ("Color",)
    assert schema.allowed_attributes("Unknown") is None and schema.allowed_attributes(None) is None
    schema.save(tmp_path / "s.json")
    again = AttributeSchema.load(tmp_path / "s.json")
    assert again == schema and again.categories == schema.categories
