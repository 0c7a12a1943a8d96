"""spaCy `DocBin` files as mjave Records and back, so spaCy-annotated data trains mjave and
mjave's data opens in spaCy tools (`.spacy` files, as `spacy convert` writes them).

A Record becomes a Doc whose tokens are cut at every span boundary (a blank "xx" tokenizer,
then split where a value starts or ends inside a token), so each value is a token span with
exactly its character offsets; a value that still cannot be one (it starts or ends in the
whitespace after a token) is kept in `doc.user_data[unaligned_key(spans_key)]` instead, never
dropped. The values go to `doc.spans[spans_key]` (label = attribute, `span._.score`), the
record's `id`, `cid`, `category` and `image` to Doc extensions of those names, and its `extra`
fields to `doc.user_data` as JSON, so `records -> DocBin -> records` gives the same records.

Reading a DocBin that mjave did not write: its values are `doc.spans[spans_key]` when the Doc
has that key (even empty), else its entities (`doc.ents`, what NER annotation tools write); a
Doc without an id is numbered from 1 in file order. spaCy is imported only when called
(`pip install 'mjave[spacy]'`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from mjave.data.errors import DataError
from mjave.data.formats.registry import Format, register
from mjave.data.formats.row_types import RecordRow
from mjave.data.formats.predictions import split_values
from mjave.data.formats.write_issues import WriteIssues
from mjave.data.outputs import atomic_write, check_not_input
from mjave.data.records import Record, Span
from mjave.data.validate import check_record

if TYPE_CHECKING:  # spaCy is optional
    from spacy.language import Language
    from spacy.tokens import Doc, DocBin
    from spacy.vocab import Vocab

INSTALL_HINT = "spaCy support needs the [spacy] extra: pip install 'mjave[spacy]'"
SPANS_KEY = "mjave"
"""The default `doc.spans` key of mjave's values (the component's and the converters')."""
DOC_FIELDS = ("id", "cid", "category", "image")
"""Record fields kept as Doc extensions (`doc._.category` also steers the component)."""
SCORE_KEY = "mjave.score"
EXTRA_KEY = "mjave.extra"


def spacy_module() -> ModuleType:
    """`spacy`, with the install hint when it is missing."""
    try:
        import spacy
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return spacy


def unaligned_key(spans_key: str = SPANS_KEY) -> str:
    """The `doc.user_data` key of the values of `spans_key` that are no token span (a list of
    `{"attribute", "value", "begin", "end", "score"}`, the Extractor's value dicts)."""
    return f"{spans_key}:unaligned"


def _span_score(span: Any) -> float | None:
    return span.doc.user_data.get((SCORE_KEY, span.start_char, span.end_char, span.label_))


def _set_span_score(span: Any, score: float | None) -> None:
    span.doc.user_data[(SCORE_KEY, span.start_char, span.end_char, span.label_)] = score


def register_extensions() -> None:
    """Declare `Doc._.id/cid/category/image` and `Span._.score` (once; an extension another
    package already declared under one of these names is left as it is).

    The score is keyed by offsets *and label* in `doc.user_data`: spaCy's own span extensions
    are keyed by offsets only, so two values of different attributes on the same tokens would
    share one score."""
    tokens = spacy_module().tokens
    for name in DOC_FIELDS:
        if not tokens.Doc.has_extension(name):
            tokens.Doc.set_extension(name, default=None)
    if not tokens.Span.has_extension("score"):
        tokens.Span.set_extension("score", getter=_span_score, setter=_set_span_score)


def value_dict(begin: int, end: int, attr: str, value: str, score: float | None
               ) -> dict[str, Any]:
    """A value as the Extractor returns it (the shape of the unaligned list)."""
    return {"attribute": attr, "value": value, "begin": begin, "end": end, "score": score}


# --------------------------------------------------------------------------------------------
# Records -> Docs
# --------------------------------------------------------------------------------------------


def blank_pipeline(nlp_or_vocab: Language | Vocab | None = None) -> Language:
    """A pipeline that tokenizes: `nlp_or_vocab` if it is one, else blank "xx" (multi-language
    rules) over the given vocab or a new one."""
    spacy = spacy_module()
    if hasattr(nlp_or_vocab, "make_doc"):
        return nlp_or_vocab  # type: ignore[return-value]
    return spacy.blank("xx", vocab=nlp_or_vocab if nlp_or_vocab is not None else True)


def tokens_cut_at(nlp: Language, text: str, cuts: Iterable[int]) -> Doc:
    """`nlp.make_doc(text)` with its tokens also split at the character offsets `cuts`, so a
    span from one cut to another is a token span (its text is unchanged)."""
    doc = nlp.make_doc(text)
    inner = sorted({c for c in cuts if 0 < c < len(text)})
    words: list[str] = []
    spaces: list[bool] = []
    for token in doc:
        a, b = token.idx, token.idx + len(token)
        bounds = [a, *(c for c in inner if a < c < b), b]
        for i in range(len(bounds) - 1):
            words.append(text[bounds[i]:bounds[i + 1]])
            spaces.append(bool(token.whitespace_) and i == len(bounds) - 2)
    if len(words) == len(doc):
        return doc
    return spacy_module().tokens.Doc(nlp.vocab, words=words, spaces=spaces)


def record_to_doc(record: Record, nlp: Language, spans_key: str = SPANS_KEY) -> Doc:
    """One Record as a Doc (see the module docstring); `register_extensions` first."""
    doc = tokens_cut_at(nlp, record.text, (c for s in record.spans for c in (s.begin, s.end)))
    group, unaligned = [], []
    for s in record.spans:
        span = doc.char_span(s.begin, s.end, label=s.attr, alignment_mode="strict")
        if span is None or len(span) == 0:
            unaligned.append(value_dict(s.begin, s.end, s.attr, s.value, s.score))
            continue
        group.append(span)
        if s.score is not None:
            span._.score = s.score
    doc.spans[spans_key] = group
    if unaligned:
        doc.user_data[unaligned_key(spans_key)] = unaligned
    for name in DOC_FIELDS:
        setattr(doc._, name, getattr(record, name))
    if record.extra:
        doc.user_data[EXTRA_KEY] = json.dumps(record.extra, ensure_ascii=False)
    return doc


def records_to_docbin(records: Iterable[Record], nlp_or_vocab: Language | Vocab | None = None,
                      spans_key: str = SPANS_KEY) -> DocBin:
    """Records as a DocBin (user data stored: ids, categories, scores, unaligned values).

    `nlp_or_vocab`: a pipeline whose tokenizer cuts the texts, or a vocab for a blank "xx"
    one (None: a new vocab)."""
    nlp = blank_pipeline(nlp_or_vocab)
    register_extensions()
    docbin = spacy_module().tokens.DocBin(store_user_data=True)
    for record in records:
        docbin.add(record_to_doc(record, nlp, spans_key))
    return docbin


# --------------------------------------------------------------------------------------------
# Docs -> Records
# --------------------------------------------------------------------------------------------


def doc_to_record(doc: Doc, number: int, spans_key: str = SPANS_KEY) -> Record:
    """One Doc as a Record, its values sorted by position; `number` (from 1) is the id of a Doc
    without one. `register_extensions` first."""
    source: Sequence[Any] = doc.spans[spans_key] if spans_key in doc.spans else doc.ents
    spans = [Span(s.start_char, s.end_char, s.label_, s.text, s._.score) for s in source]
    unaligned, implicit = split_values(doc.user_data.get(unaligned_key(spans_key), ()))
    spans += unaligned
    spans.sort(key=lambda s: (s.begin, s.end, s.attr))
    extra = doc.user_data.get(EXTRA_KEY)
    fields = {name: getattr(doc._, name) for name in DOC_FIELDS}
    if fields["id"] is None:
        fields["id"] = str(number)
    return Record(text=doc.text, spans=spans,
                  extra={**(json.loads(extra) if extra else {}), **implicit}, **fields)


def docbin_to_records(docbin: DocBin, vocab: Vocab | None = None,
                      spans_key: str = SPANS_KEY) -> list[Record]:
    """The Docs of a DocBin as Records (`vocab`: the pipeline's, or a new one)."""
    if vocab is None:
        vocab = blank_pipeline().vocab
    register_extensions()
    return [doc_to_record(doc, n, spans_key)
            for n, doc in enumerate(docbin.get_docs(vocab), 1)]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def read_docbin(path: str | os.PathLike, spans_key: str = SPANS_KEY) -> list[Record]:
    """The Records of a `.spacy` file (DataError if it is not one)."""
    tokens = spacy_module().tokens
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the file: {e.strerror}", path=str(path),
                        reason="unreadable file") from None
    try:
        docbin = tokens.DocBin(store_user_data=True).from_bytes(data)
    except Exception as e:  # zlib, msgpack and spaCy each raise their own on a bad file
        raise DataError(f"not a spaCy DocBin ({type(e).__name__}: {e})", path=str(path),
                        reason="bad docbin") from None
    return docbin_to_records(docbin, spans_key=spans_key)


def write_docbin(records: Iterable[Record], path: str | os.PathLike, *,
                 inputs: Iterable[Any] = (), spans_key: str = SPANS_KEY) -> int:
    """Write Records to a `.spacy` file atomically, refusing a `path` that is one of `inputs`
    (the files the records came from); returns the number of Docs written."""
    check_not_input(path, inputs)
    records = list(records)
    data = records_to_docbin(records, spans_key=spans_key).to_bytes()
    with atomic_write(path, "wb") as f:
        f.write(data)
    return len(records)



# --------------------------------------------------------------------------------------------
# The registry: `mjave data convert x.jsonl x.spacy`, `mjave train` on a `.spacy` file
# --------------------------------------------------------------------------------------------


def _read_rows(path: Path) -> Iterator[RecordRow]:
    """One row per Doc (numbered from 1): a DocBin is read whole, then checked Doc by Doc."""
    for n, record in enumerate(read_docbin(path), 1):
        yield n, (lambda record=record: _checked(record))


def _checked(record: Record) -> Record:
    check_record(record)
    return record


def _encode(record: Record, issues: WriteIssues) -> Record:
    return record   # a DocBin is built from all the records at once (`_save`)


def _save(records: Iterable[Record], f: Any) -> None:
    f.write(records_to_docbin(list(records)).to_bytes())


SPACY = register(Format("spacy", (".spacy",), _read_rows, _encode, save=_save, binary=True,
                        aliases=("docbin",), title="spaCy DocBin"))

__all__ = ["DOC_FIELDS", "INSTALL_HINT", "SPACY", "SPANS_KEY", "blank_pipeline", "doc_to_record",
           "docbin_to_records", "read_docbin", "record_to_doc", "records_to_docbin",
           "register_extensions", "spacy_module", "tokens_cut_at", "unaligned_key",
           "value_dict", "write_docbin"]
