"""The `mjave` spaCy pipeline component: a trained model folder predicting inside `nlp`, so
spaCy users get mjave's values as spans without leaving their pipeline.

    nlp = spacy.blank("en")
    nlp.add_pipe("mjave", config={"model": "runs/oamine"})   # found through an entry point
    doc = nlp("red cotton shirt, slim fit")
    [(s.label_, s.text, s._.score) for s in doc.spans["mjave"]]

Predictions come from `mjave.Extractor` (the one predict path: same windows, decoder and
category restriction as `mjave predict`), a batch of Docs at a time in `pipe`. Per Doc:

- `doc.spans[spans_key]`: one span per predicted value, label = attribute, `span._.score`.
  A value whose offsets are not token boundaries widens to the tokens it touches
  (`doc.char_span(..., alignment_mode="expand")`); values that widen to the same tokens and
  attribute become one span with the higher score.
- `doc.user_data[unaligned_key(spans_key)]`: the values that touch no token (they lie in the
  whitespace after one), as the Extractor's value dicts: kept and counted
  (`component.unaligned_values`, logged at debug level), never dropped silently.
- `doc.user_data[attributes_key(spans_key)]`: the predicted attributes (`{"name", "score"}`,
  the model's attribute-prediction head; always set, maybe empty), and `warning_key(spans_key)`
  the Extractor's warning (set only when there is one, as are the unaligned values).

Inputs beside the text: `doc._.image` (a path, bytes or a PIL image, for models that read the
image) and `doc._.category` (restricts decoding for models trained with
`model.restrict_to_category`), falling back to the component's `category`. A blank Doc gets no
spans; a bad input (an unreadable image, a text over the length limit) raises the Extractor's
DataError. The component holds no state of its own to save: `nlp.to_disk` stores its config,
and loading the pipeline loads the model folder named there again.

spaCy imports the module of every installed `spacy_factories` entry point whenever it makes a
pipeline (`spacy.blank` included), so this module stays light: torch and the model are loaded
only when a component is made.
"""

# Annotations stay real objects here (no `from __future__ import annotations`): spaCy builds the
# validation of a factory's config from its signature.
import logging
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from mjave.data.formats.spacy_docbin import (INSTALL_HINT, SPANS_KEY, register_extensions,
                                     unaligned_key)

try:
    from spacy.language import Language
    from spacy.tokens import Doc
    from spacy.util import minibatch
except ImportError:
    raise ImportError(INSTALL_HINT) from None

if TYPE_CHECKING:
    from mjave.inference.extractor import Extractor

log = logging.getLogger(__name__)

NO_RESULT: dict[str, Any] = {"attributes": [], "values": []}


def attributes_key(spans_key: str = SPANS_KEY) -> str:
    """The `doc.user_data` key of the predicted attributes of `spans_key`'s component."""
    return f"{spans_key}:attributes"


def warning_key(spans_key: str = SPANS_KEY) -> str:
    """The `doc.user_data` key of the Extractor's warning for a Doc (a missing image)."""
    return f"{spans_key}:warning"


class MjaveComponent:
    """Writes an Extractor's predicted values into Docs (see the module docstring)."""

    def __init__(self, extractor: "Extractor", *, category: Optional[str] = None,
                 spans_key: str = SPANS_KEY, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        register_extensions()
        self.extractor = extractor
        self.category = category
        self.spans_key = spans_key
        self.batch_size = batch_size
        self.unaligned_values = 0
        """Values so far that no token span could hold (kept in `doc.user_data`)."""

    def __call__(self, doc: Doc) -> Doc:
        return self.annotate([doc])[0]

    def pipe(self, docs: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """The Docs annotated `batch_size` at a time (`nlp.pipe` passes its own; the Extractor
        then encodes its `batch_size` texts at a time, texts of like length together)."""
        for batch in minibatch(docs, size=batch_size or self.batch_size):
            yield from self.annotate(batch)

    def annotate(self, docs: list[Doc]) -> list[Doc]:
        """Predict all `docs` in one Extractor call and annotate them in place."""
        todo = [i for i, doc in enumerate(docs) if doc.text.strip()]
        results = self.extractor.predict_batch([self.item(docs[i]) for i in todo]) \
            if todo else []
        by_index = dict(zip(todo, results))
        for i, doc in enumerate(docs):
            self.set_annotations(doc, by_index.get(i, NO_RESULT))
        return docs

    def item(self, doc: Doc) -> dict[str, Any]:
        """The Extractor input of a Doc: its text, `doc._.image`, and `doc._.category` or the
        component's category."""
        category = doc._.category if doc._.category is not None else self.category
        return {"text": doc.text, "image": doc._.image, "category": category}

    def set_annotations(self, doc: Doc, result: dict[str, Any]) -> None:
        """Write one Extractor result into `doc` (replacing an earlier run's)."""
        spans: dict[tuple[int, int, str], Any] = {}
        unaligned = []
        for v in result["values"]:
            if v["begin"] is None:   # a value named without a span (issue #31): no tokens
                unaligned.append(dict(v))
                continue
            span = doc.char_span(v["begin"], v["end"], label=v["attribute"],
                                 alignment_mode="expand")
            if span is None or len(span) == 0:
                unaligned.append(dict(v))
                continue
            key = (span.start, span.end, v["attribute"])
            if key not in spans or v["score"] > spans[key][1]:
                spans[key] = (span, v["score"])
        doc.spans[self.spans_key] = [span for span, _ in spans.values()]
        for span, score in spans.values():
            span._.score = score
        doc.user_data[attributes_key(self.spans_key)] = list(result["attributes"])
        for key, value in ((unaligned_key(self.spans_key), unaligned),
                           (warning_key(self.spans_key), result.get("warning"))):
            if value:
                doc.user_data[key] = value
            else:
                doc.user_data.pop(key, None)
        if unaligned:
            self.unaligned_values += len(unaligned)
            log.debug("%d predicted value(s) of a %d-character text fall on no token; kept in "
                      "doc.user_data[%r]", len(unaligned), len(doc.text),
                      unaligned_key(self.spans_key))


@Language.factory(
    "mjave",
    default_config={"category": None, "spans_key": SPANS_KEY, "batch_size": 32,
                    "device": "auto", "threshold": None},
    assigns=["doc.spans"],
)
def make_mjave(nlp: Language, name: str, model: str, category: Optional[str], spans_key: str,
               batch_size: int, device: str, threshold: Optional[float]) -> MjaveComponent:
    """`nlp.add_pipe("mjave", config={"model": FOLDER, ...})`: load a model folder written by
    `mjave train` (or `mjave export`) with `mjave.Extractor.load`."""
    from mjave import Extractor
    extractor = Extractor.load(model, device=device, batch_size=batch_size, threshold=threshold)
    return MjaveComponent(extractor, category=category, spans_key=spans_key,
                          batch_size=batch_size)


__all__ = ["MjaveComponent", "attributes_key", "make_mjave", "warning_key"]
