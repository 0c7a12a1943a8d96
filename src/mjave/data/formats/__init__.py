"""Every data file mjave reads or writes, through one registry of formats.

Eight formats, one module each, each registering a `Format` (see `registry.Format`):

- `jsonl`: JSONL (mjave's own; holds everything a Record has),
- `jave_tsv`: MEPAVE/JAVE TSV (`jave`, also called `tsv` or `mepave`), spans as tags,
- `conll`: CoNLL BIO, spans as token tags,
- `csv` and `parquet`: tables of unlabelled products (no spans; read only),
- `predictions`: `mjave predict` JSONL, its values as scored spans (read only),
- `labelstudio`: Label Studio's JSON export and import tasks (with the labelling config),
- `spacy_docbin`: spaCy's DocBin (`.spacy`, named `spacy`), spaCy imported only when used.

One implementation of each operation, for every format (in `registry`, re-exported here):
`detect_format` (by name or extension), `iter_records` / `read_records` (validated Records,
strict or lenient; `labelled=True` refuses a format without spans, naming those with spans),
`write_records` (validated, atomic), `read_input` (raw rows for batch prediction) and
`read_table` (CSV/TSV/JSONL tables with a header: catalog tables, synonym lists). Helper
modules hold the shared machinery: `text_lines` (bytes per line, readability), `json_text`,
`delimited` (CSV), `table_records`, `input_rows`, `write_issues`, `row_types`.

Adding a format is one new module and one line here: write `formats/<name>.py` that parses a
file into `(line, parse)` rows (and, if it can be written, encodes one Record), end it with
`register(Format(name, extensions, read_rows, write, has_spans=...))`, and add the module's
name to `FORMAT_MODULES` below. Detection, strict/lenient reading, validation, atomic writing,
prediction input and every command's `--format` choices then include it. A binary format
(spaCy's DocBin) sets `binary=True` and a `save` that writes the encoded records at once; a
format with several records per file object (Label Studio's JSON export) yields one row per
task from `read_rows`.
"""

from __future__ import annotations

from importlib import import_module

from mjave.data.formats.input_rows import InputRow
from mjave.data.formats.registry import (TABLE_EXTENSIONS, Format, detect_format,
                                         detect_labelled_format, format_aliases,
                                         format_extensions, format_named, format_names,
                                         iter_records, read_input, read_records, read_table,
                                         register, unregister, validated_records,
                                         write_records)
from mjave.data.formats.write_issues import WriteIssues

FORMAT_MODULES = ("jsonl", "jave_tsv", "conll", "csv", "parquet", "predictions", "labelstudio",
                  "spacy_docbin")
"""The format modules, imported (and so registered) in this order: the order of the names in
help texts and error messages."""

for _module in FORMAT_MODULES:
    import_module(f"{__name__}.{_module}")

FORMATS = format_names()
"""The names of the built-in formats (a format registered later is found all the same)."""
RECORD_FORMATS = format_names(has_spans=True)
"""The built-in formats that carry spans: what labelled data can be in."""
EXTENSIONS = format_extensions()
ALIASES = format_aliases()

__all__ = ["ALIASES", "EXTENSIONS", "FORMATS", "FORMAT_MODULES", "Format", "InputRow",
           "RECORD_FORMATS", "TABLE_EXTENSIONS", "WriteIssues", "detect_format",
           "detect_labelled_format", "format_aliases", "format_extensions", "format_named",
           "format_names", "iter_records", "read_input", "read_records", "read_table",
           "register", "unregister", "validated_records", "write_records"]
