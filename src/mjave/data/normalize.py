"""Text normalisation for matching catalog values in product texts, with offsets back.

A catalog says "Non-GMO", the title says "non gmo"; a table says "ＸＬ", the text "XL". Both sides
are normalised the same way (Unicode NFKC, case-fold, every run of whitespace and punctuation
collapsed to one space, stripped at the ends) and matched there; the match is then mapped back to
character offsets into the ORIGINAL text, so the output span is exactly what the text spells.

NFKC and case folding may expand one character into several ("ﬁ" -> "fi", "ß" -> "ss") or merge a
base letter with its combining marks ("e" + U+0301 -> "é"), so each *cluster* (a character with
its following combining marks) is normalised on its own and every normalised character remembers
the cluster it came from. Format characters (soft hyphen, zero-width space, ...) are dropped.

Matching (`find_value`) respects word boundaries for alphanumeric scripts ("red" is not found in
"reddish") and none for CJK and Hangul, where words are not separated by spaces ("红色" is found in
"红色连衣裙").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Collection

# Han, kana, bopomofo, CJK punctuation/forms and Hangul: matched at character level.
_CJK = ("\u1100-\u11ff\u2e80-\u2fff\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f"
        "\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff"
        "\ufe30-\ufe4f\U00020000-\U0003ffff")
_CJK_RE = re.compile(f"[{_CJK}]")


def is_cjk(c: str) -> bool:
    """A character of a script written without spaces between words (matched anywhere)."""
    return _CJK_RE.match(c) is not None


def is_word_char(c: str) -> bool:
    """A letter, digit or mark of a space-separated script: a match may not cut through a run of
    these. CJK characters are excluded, so "T恤" is found in "纯棉T恤" and "棉" in "纯棉T恤"."""
    return unicodedata.category(c)[0] in "LNM" and not is_cjk(c)


_KEPT_PUNCTUATION = frozenset("%‰‱#&@")


def _is_separator(c: str) -> bool:
    """Whitespace and punctuation (Unicode P*): collapsed, so "Non-GMO" matches "non gmo".
    Symbols (+, °, $) and the punctuation that carries meaning in values ("5%", "#2", "M&M")
    are kept."""
    return c.isspace() or (unicodedata.category(c)[0] == "P" and c not in _KEPT_PUNCTUATION)


def _is_dropped(c: str) -> bool:
    """Invisible format characters (soft hyphen, zero-width space/joiner, BOM)."""
    return unicodedata.category(c) == "Cf"


@dataclass(frozen=True)
class Normalized:
    """A normalised text and, per normalised character, the original [start, end) it came from.

    A character from an expansion ("ﬁ" -> "f", "i") maps to the whole original cluster; a
    collapsed separator maps to its whole original run ("  , " -> " ")."""

    original: str
    text: str
    starts: list[int]
    ends: list[int]

    def case_breaks(self) -> frozenset[int]:
        """Normalised positions where the original text changes case inside a word ("Drive|In",
        "SATA|Insight"): word boundaries of texts whose spaces were lost in scraping."""
        o = self.original
        out = set()
        for j in range(1, len(self.text)):
            a = self.starts[j]
            if self.starts[j - 1] == a or self.ends[j - 1] != a or not o[a].isupper():
                continue
            if o[a - 1].islower() or (o[a - 1].isupper() and a + 1 < len(o) and o[a + 1].islower()):
                out.add(j)
        return frozenset(out)

    def original_span(self, b: int, e: int) -> tuple[int, int]:
        """Original [begin, end) of the normalised span [b, e) (e > b)."""
        return self.starts[b], self.ends[e - 1]

    def surface_span(self, b: int, e: int, value: str) -> tuple[int, int]:
        """`original_span`, widened over the punctuation the value itself starts or ends with when
        the text has it there too: the value "10.6 oz." labels "10.6 oz." in "..., 10.6 oz.", not
        "10.6 oz" (normalisation strips edge punctuation, the surface should keep it)."""
        ob, oe = self.original_span(b, e)
        head, tail = value_edges(value)
        if head and ob >= len(head) and _same(self.original[ob - len(head):ob], head):
            ob -= len(head)
        if tail and _same(self.original[oe:oe + len(tail)], tail):
            oe += len(tail)
        return ob, oe


def value_edges(value: str) -> tuple[str, str]:
    """The separator characters a value starts and ends with ("(", ".)" for "(12 ct.)")."""
    i, j = 0, len(value)
    while i < j and (_is_separator(value[i]) or _is_dropped(value[i])):
        i += 1
    while j > i and (_is_separator(value[j - 1]) or _is_dropped(value[j - 1])):
        j -= 1
    return (value[:i], value[j:]) if i < j else ("", "")


def _same(a: str, b: str) -> bool:
    """Equal up to compatibility forms: "．" in the text matches "." in the value."""
    return unicodedata.normalize("NFKC", a) == unicodedata.normalize("NFKC", b)


def _clusters(text: str):
    """(start, end) of each base character with the combining marks that follow it."""
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        yield i, j
        i = j


def normalize(text: str) -> Normalized:
    """NFKC, case-fold, collapse whitespace/punctuation runs to one space, strip; with offsets."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pending: tuple[int, int] | None = None  # an open separator run (original start, end)
    for a, b in _clusters(text):
        for c in unicodedata.normalize("NFKC", text[a:b]).casefold():
            if _is_dropped(c):
                continue
            if _is_separator(c):
                pending = (pending[0] if pending else a, b)
                continue
            if pending is not None:
                if out:  # no leading separator
                    out.append(" ")
                    starts.append(pending[0])
                    ends.append(pending[1])
                pending = None
            out.append(c)
            starts.append(a)
            ends.append(b)
    return Normalized(text, "".join(out), starts, ends)


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index of the original character
    it starts at, plus one final entry `len(text)`.

    Map a match [b, e) back with `normalize(text).original_span(b, e)`: the end is the end of the
    cluster of character e-1, which `offsets[e]` is not when punctuation was collapsed or dropped
    after it."""
    n = normalize(text)
    return n.text, n.starts + [len(text)]


def collapse_punctuation(s: str) -> str:
    """The form two values are compared in ("Non-GMO", "non gmo" and "ＮＯＮ－ＧＭＯ" are equal)."""
    return normalize(s).text


def find_value(text_norm: str, value_norm: str, breaks: Collection[int] = ()
               ) -> list[tuple[int, int]]:
    """Non-overlapping occurrences of `value_norm` in `text_norm` (both normalised), left to right.

    An occurrence may not start or end inside a word of a space-separated script: the value's edge
    character and its neighbour in the text must not both be word characters. CJK characters are
    never word characters here, so CJK values match anywhere. `breaks`: further positions that
    count as word boundaries (e.g. `Normalized.case_breaks()`)."""
    found: list[tuple[int, int]] = []
    if not value_norm:
        return found
    m = len(value_norm)
    head_word = is_word_char(value_norm[0])
    tail_word = is_word_char(value_norm[-1])
    i = text_norm.find(value_norm)
    while i >= 0:
        e = i + m
        ok = not (head_word and i > 0 and is_word_char(text_norm[i - 1]) and i not in breaks)
        ok = ok and not (tail_word and e < len(text_norm) and is_word_char(text_norm[e])
                         and e not in breaks)
        if ok:
            found.append((i, e))
            i = text_norm.find(value_norm, e)
        else:
            i = text_norm.find(value_norm, i + 1)
    return found


def find_in_original(text: str | Normalized, value: str) -> list[tuple[int, int]]:
    """Occurrences of `value` in `text` as offsets into the original text (see `surface_span`)."""
    n = text if isinstance(text, Normalized) else normalize(text)
    return [n.surface_span(b, e, value) for b, e in find_value(n.text, collapse_punctuation(value))]


KEEP_AFTER_DIGIT = frozenset("%‰‱")
"""Trailing signs `casefold_strip` keeps after a digit ("50%" is not "50")."""


def casefold_strip(value: str) -> str:
    """Canonical form of a value string, so that surface noise is not counted as an error.

    Unicode NFKC (full-width to ASCII, compatibility forms), casefold, collapse every run of
    whitespace to one space, then strip whitespace and Unicode punctuation (categories P*) from
    both ends. Exception: a trailing % (or per-mille sign) directly after a digit is kept, since
    "50%" and "50" are different values. Inner punctuation is kept ("t-shirt", "1.5").
    """
    text = " ".join(unicodedata.normalize("NFKC", value).casefold().split())

    def strippable(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch).startswith("P")

    begin, end = 0, len(text)
    while begin < end and strippable(text[begin]):
        begin += 1
    while end > begin and strippable(text[end - 1]):
        if text[end - 1] in KEEP_AFTER_DIGIT and end - 2 >= begin and text[end - 2].isdigit():
            break
        end -= 1
    return text[begin:end]
