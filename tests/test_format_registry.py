"""The format registry (`mjave.data.formats`): a format is one module, every command offers the
same formats, labelled commands refuse formats without spans, and `mjave.data` has no import
circle and no public name defined twice."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import mjave.data
from mjave.cli import main
from mjave.cli.entry import build_parser
from mjave.cli.format_option import format_choices, formats_help
from mjave.data import formats
from mjave.data.errors import DataError, RowIssues
from mjave.data.records import Record, Span

DATA = Path(mjave.data.__file__).parent

PIPES = '''
"""A test format: `id|text` per line, no spans."""
from mjave.data.formats.registry import Format, register
from mjave.data.formats.text_lines import line_rows
from mjave.data.records import Record


def _parse(line):
    id_, text = line.split("|", 1)
    return Record(id=id_, text=text)


def _write(record, issues):
    return f"{record.id}|{record.text}\\n"


PIPES = register(Format("pipes", (".pipes",), lambda path: line_rows(path, _parse), _write,
                        has_spans=False, aliases=("pipe",)))
'''


@pytest.fixture
def pipes_format(tmp_path):
    """The `pipes` format, registered by importing its one module (removed afterwards)."""
    module = tmp_path / "pipes_format.py"
    module.write_text(PIPES, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("pipes_format", module)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    try:
        yield "pipes"
    finally:
        formats.unregister("pipes")


def test_a_format_is_one_module(pipes_format, tmp_path):
    p = tmp_path / "items.pipes"
    p.write_text("a|red shirt\n\nb|blue hat\na|again\n", encoding="utf-8")
    assert "pipes" in formats.format_names() and "pipes" not in formats.format_names(True)
    assert formats.detect_format(p) == "pipes"
    assert formats.detect_format(tmp_path / "x.dat", "pipe") == "pipes"
    issues = RowIssues()
    got = list(formats.iter_records(p, strict=False, issues=issues))
    assert [(r.id, r.text) for r in got] == [("a", "red shirt"), ("b", "blue hat")]
    assert [(e.line, e.reason) for e in issues.skipped] == [(4, "duplicate id")]
    # prediction input comes for free: the records, a skipped row as an error row
    rows = list(formats.read_input(p))
    assert [(r.id, r.text, r.error is not None) for r in rows] == [
        ("a", "red shirt", False), ("b", "blue hat", False), (None, None, True)]
    assert rows[2].number == 4 and rows[2].error.reason == "duplicate id"
    # writing goes through the one validated atomic writer
    out = tmp_path / "out.pipes"
    formats.write_records([Record("x", "green shoes")], out)
    assert out.read_text(encoding="utf-8") == "x|green shoes\n"
    # labelled data is refused, naming the formats that carry spans
    with pytest.raises(DataError, match=r"pipes carries no spans.*\(jsonl, jave, conll, "
                       r"predictions, labelstudio, spacy\)"):
        formats.read_records(p, labelled=True)
    # and every command offers it
    assert "pipes" in format_choices() and "pipes" in formats_help()


def test_a_name_or_extension_is_registered_once(pipes_format):
    fmt = formats.format_named("pipes")
    with pytest.raises(ValueError, match="already registered"):
        formats.register(fmt)
    with pytest.raises(ValueError, match=r"\.csv already registered"):
        formats.register(formats.Format("other", (".csv",), fmt.read_rows))


def _format_options(parser: argparse.ArgumentParser, path: str = "mjave"
                    ) -> dict[str, argparse.Action]:
    """`command --flag` -> its action, for every --format/--from/--to of every command."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_format_options(sub, f"{path} {name}"))
        elif set(action.option_strings) & {"--format", "--from", "--to"}:
            found[f"{path} {action.option_strings[0]}"] = action
    return found


def test_every_command_lists_the_same_formats():
    options = _format_options(build_parser())
    for command in ("data validate --format", "data stats --format", "data convert --from",
                    "data convert --to", "data label --format", "predict --format",
                    "complete --format", "review --format", "evaluate --format"):
        assert f"mjave {command}" in options, command
    expected = [*formats.format_names(), *formats.format_aliases()]
    assert expected[:5] == ["jsonl", "jave", "conll", "csv", "parquet"]
    for name, action in options.items():
        assert list(action.choices) == expected, name
        assert formats_help() in " ".join(action.help.split()), name


def test_every_help_text_names_every_format(capsys):
    for command in (["data", "validate"], ["predict"], ["evaluate"], ["complete"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert formats_help() in text, command


@pytest.mark.parametrize("command", [["data", "validate"], ["data", "stats"],
                                     ["data", "convert"], ["evaluate", "no-model-needed"]])
def test_a_labelled_command_given_csv_names_the_formats_with_spans(tmp_path, capsys, command):
    p = tmp_path / "products.csv"
    p.write_text("id,text\na,red shirt\n", encoding="utf-8")
    args = [*command, str(p), *([str(tmp_path / "out.jsonl")] if "convert" in command else [])]
    for extra in ([], ["--from" if "convert" in command else "--format", "csv"]):
        assert main([*args, *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert "csv carries no spans" in err, err
        assert "(jsonl, jave, conll, predictions, labelstudio, spacy)" in err, err
    assert not (tmp_path / "out.jsonl").exists()


def test_labelled_reading_refuses_tables_and_keeps_spans(tmp_path):
    p = tmp_path / "a.jsonl"
    formats.write_records([Record("a", "red shirt", [Span(0, 3, "Color", "red")])], p)
    assert formats.read_records(p, labelled=True)[0][0].spans == [Span(0, 3, "Color", "red")]
    with pytest.raises(DataError) as e:
        formats.read_records(p, "parquet", labelled=True)
    assert "parquet carries no spans" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="csv carries no spans"):
        formats.write_records([], tmp_path / "out.csv")


# ---- the shape of mjave.data ----------------------------------------------------------------


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(DATA.rglob("*.py")):
        parts = list(path.relative_to(DATA.parent.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The mjave.data modules `path` imports (at any depth of the file: in functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    if name == "mjave.data.formats":  # the format modules, imported from FORMAT_MODULES
        found.update(f"{name}.{m}" for m in formats.FORMAT_MODULES)
    return {m for m in found if m in modules and m != name}


def test_no_import_circle_in_mjave_data():
    modules = _modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    assert "mjave.data.formats.jsonl" in graph["mjave.data.formats"]
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            pytest.fail("import circle: " + " -> ".join(stack[stack.index(name):] + [name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*stack, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_the_circle_check_sees_a_circle(tmp_path):
    modules = {"mjave.data.a": tmp_path / "a.py", "mjave.data.b": tmp_path / "b.py"}
    modules["mjave.data.a"].write_text("def f():\n    from mjave.data.b import g\n")
    modules["mjave.data.b"].write_text("from mjave.data import a\n")
    assert _imports(modules["mjave.data.a"], "mjave.data.a", modules) == {"mjave.data.b"}
    assert _imports(modules["mjave.data.b"], "mjave.data.b", modules) == {"mjave.data.a"}


def _public_definitions(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_")]


def test_no_public_name_is_defined_twice_in_mjave_data():
    where: dict[str, list[str]] = defaultdict(list)
    for name, path in _modules().items():
        for defined in _public_definitions(path):
            where[defined].append(name)
    twice = {n: ms for n, ms in where.items() if len(ms) > 1}
    assert not twice, twice
    # the one implementation of each operation lives in the registry
    for op in ("detect_format", "iter_records", "read_records", "write_records", "read_input",
               "read_table"):
        assert where[op] == ["mjave.data.formats.registry"], op
        assert getattr(formats, op).__module__ == "mjave.data.formats.registry"


def test_the_old_modules_are_gone():
    for old in ("mjave.data.io", "mjave.data.products"):
        assert importlib.util.find_spec(old) is None, old
    assert not (DATA / "formats.py").exists()
    assert "mjave.data.formats.jsonl" in sys.modules
