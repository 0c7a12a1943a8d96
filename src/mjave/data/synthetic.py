"""A seeded synthetic multimodal catalog in which the image is NECESSARY (the built-in demo data).

Every product is a fashion item drawn as a flat silhouette (shirt, dress, pants, shoes, bag) filled
with its colour, optionally overlaid with a pattern or a metallic sheen. Every product has 1-3
short texts (one `Record` each); value mentions are character spans, as in MEPAVE.

Why a text-only model cannot reach the multimodal ceiling
---------------------------------------------------------
Products are generated in *couples* (twins). The two twins of a couple share one to three
*ambiguous* sentences: the text is byte-identical in both records, the gold span sets differ, and
only the rendered image tells which one applies. The three mechanisms follow the paper's Figure 1
("This golden band collar shirt can be paired with black shoes"):

1. Outfit sentences, e.g. ``red shirt with black shoes`` / ``red shirt, pairs well with black
   shoes``: ``{c1} {noun1} <link> {c2} {noun2}`` with two *different* categories. One twin is
   noun1's item in colour c1, the other is noun2's item in colour c2, so for a given text the
   product being sold is either one with probability 1/2. Gold: only the sold product's colour
   word is a ``Color`` span; the other colour is not labeled. The image (silhouette and fill
   colour) decides.
2. Colour vs material words (``golden``, ``silver``, ``bronze``), e.g. ``with a golden finish``:
   one twin is *coloured* golden (the whole garment is filled golden; the span is ``Color``),
   the other is *made of* a golden metallic material (another base colour with dense bright
   diagonal golden sheen stripes; the span is ``Material``).
3. Pattern words, e.g. ``striped vibes`` / ``goes well with polka dot``: one twin shows the
   pattern (drawn in a contrasting colour over the garment; the word is a ``Pattern`` span), the
   other is solid (the word is not labeled).

4. Everything else is learnable from text alone, so text-only is far from zero and the comparison
   is fair: unambiguous clauses for ``Collar Type`` (band collar, v-neck, round neck, lapel,
   hooded), ``Sleeve Length`` (long sleeve, short sleeve, sleeveless), ``Style`` (casual, vintage,
   business, sporty), ``Closure`` (zipper, buttons, lace-up), ``Fit`` (slim fit, loose fit),
   ``Material`` (fabrics: cotton, linen, ...), ``Pattern`` (``{pattern} print``) and one-colour
   ``Color`` mentions (``this red casual piece``), several paraphrases each, randomly combined,
   plus filler clauses without values.

Ambiguous sentences never name the product's own category except in the outfit template, where
both categories are named symmetrically. The JSON ``category`` field is the coarse group
``"apparel"`` for every product; the fine category lives only in the image and in the debugging
file ``products.jsonl`` (ground truth; models must not read it). Product ids are a random
permutation, so neither the id nor the file order tells the twins' roles apart.

Expected text-only ceiling
--------------------------
Because every ambiguous text occurs equally often with each labeling (twins share it), a perfect
text-only model knows that each ambiguous candidate span is right with probability exactly 1/2,
and nothing more. The best it can do for micro span F1 (`text_only_ceiling`, computed by
grouping identical texts) is to predict every candidate (outfit: both colour words; metal: one
of Color/Material; pattern: the word). With about half of the gold spans in ambiguous sentences
that gives about 0.78: 0.786 on all 600 products at seed 0 (0.767 on its test split), 0.77-0.79
over seeds 0-7.
Labels are a function of (text, what the image shows), so an image-aware oracle (`oracle_f1` keyed
by `(text, visual_key(product))`) reaches 1.0. `ambiguous_rate` (default 0.95, giving 48-53% of
gold spans in ambiguous sentences at n=600) dials the ambiguity; `ambiguous_rate=0` gives a
catalog that text alone solves (ceiling 1.0).

Text-silent products (image-only values)
---------------------------------------
Issue #31 section 2: in real catalogs many texts never state a value the photo shows (a product
page that says "cotton, slim fit" of a plain red shirt), so a span tagger cannot extract it and a
model must predict a value without a span. `text_silent_rate` (default 0: no such product; the
catalog is then byte-identical to one made before the option existed) makes that share of
products *text-silent*: none of their texts has a ``Color``, ``ColorStyle`` or ``Pattern`` clause,
and no other clause or filler contains a colour or pattern word, while Collar Type, Sleeve
Length, Style, Closure, Fit and (fabric) Material are still mentioned. Every record of a
text-silent product carries ``extra["implicit_values"] = {"Color": <fill colour>, "Pattern":
<pattern, or None for a solid one>}`` (`Record.implicit_values`; the JSONL files keep it as a
top-level ``implicit_values`` field). The colour is the product's `color`, the image's fill, also
for a metallic material (the base colour under the sheen). Silence is drawn per product from its
own random stream (seed * 7919 + 1), so the rest of the catalog does not move. A couple with a
text-silent twin shares *no* ambiguous sentence (shared sentences name both twins' colours or a
pattern); both twins keep their drafted looks (metal colour vs material, pattern vs solid), and
the other twin gets only ordinary sentences. Hence the ambiguous share falls as the rate grows
(about 19% of gold spans at rate 0.3, n=600, seed 0). `catalog_summary` counts text-silent
products and records.

Twins always land in the same split, so every split (and the test split in particular) has the
same property. Same seed, same files (byte-identical). `render_product` takes about 1.3 ms per
224x224 image (PNG encoding another ~3 ms); 600 products are written in about 3 s (~28 MB).

This module uses only numpy, Pillow and the standard library (no torch).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mjave.data.formats import write_records
from mjave.data.outputs import atomic_write
from mjave.data.records import Record, Span

__all__ = [
    "CATEGORIES", "COLORS", "METALS", "PATTERNS", "COARSE_CATEGORY", "SPLITS",
    "Product", "SyntheticCatalog", "CatalogInfo",
    "build_catalog", "generate_records", "generate_catalog", "render_product",
    "dominant_palette_color", "catalog_summary", "text_only_ceiling", "oracle_f1", "visual_key",
]

SPLITS = ("train", "valid", "test")
COARSE_CATEGORY = "apparel"

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

#: Fill colour of every colour name (RGB). Pairwise distances are >= 65 so that an ImageNet CNN
#: (and the nearest-colour test below) tells them apart; none is close to the light background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 40),
    "orange": (250, 100, 10),
    "yellow": (250, 225, 30),
    "green": (40, 150, 60),
    "teal": (0, 140, 140),
    "blue": (40, 80, 210),
    "purple": (120, 50, 170),
    "pink": (240, 130, 180),
    "brown": (100, 55, 25),
    "black": (30, 30, 30),
    "golden": (212, 175, 55),
    "silver": (192, 192, 192),
    "bronze": (176, 108, 48),
}
#: Words that are a Color or a (metallic) Material depending on the product.
METALS = ("golden", "silver", "bronze")
BASE_COLORS = tuple(c for c in COLORS if c not in METALS)

CATEGORIES = ("shirt", "dress", "pants", "shoes", "bag")
#: Surface nouns of each category in outfit sentences.
NOUNS: dict[str, tuple[str, ...]] = {
    "shirt": ("shirt", "top", "blouse"),
    "dress": ("dress",),
    "pants": ("pants", "trousers"),
    "shoes": ("shoes", "sneakers", "boots"),
    "bag": ("bag", "handbag", "tote"),
}

PATTERNS = ("striped", "plaid", "polka dot", "floral", "checked")
STYLES = ("casual", "vintage", "business", "sporty")
FITS = ("slim fit", "loose fit")
#: Text-only attributes each category can have (Style is shared by all).
CATEGORY_ATTRS: dict[str, dict[str, tuple[str, ...]]] = {
    "shirt": {"Collar Type": ("band collar", "v-neck", "round neck", "lapel", "hooded"),
              "Sleeve Length": ("long sleeve", "short sleeve", "sleeveless"),
              "Closure": ("buttons", "zipper"), "Fit": FITS},
    "dress": {"Collar Type": ("band collar", "v-neck", "round neck", "lapel"),
              "Sleeve Length": ("long sleeve", "short sleeve", "sleeveless"),
              "Closure": ("zipper", "buttons"), "Fit": FITS},
    "pants": {"Closure": ("zipper", "buttons"), "Fit": FITS},
    "shoes": {"Closure": ("lace-up", "zipper")},
    "bag": {"Closure": ("zipper", "buttons")},
}
FABRICS: dict[str, tuple[str, ...]] = {
    "shirt": ("cotton", "linen", "silk", "denim"),
    "dress": ("cotton", "silk", "linen"),
    "pants": ("denim", "cotton", "linen", "wool"),
    "shoes": ("leather", "canvas"),
    "bag": ("leather", "canvas"),
}

# Templates. `{name}` is a slot; the slot's value is a span or not depending on the product.
OUTFIT_TEMPLATES = (
    "{c1} {n1} with {c2} {n2}",
    "{c1} {n1}, pairs well with {c2} {n2}",
    "{c1} {n1} can be paired with {c2} {n2}",
    "style the {c1} {n1} with {c2} {n2}",
    "{c1} {n1} and {c2} {n2} for a complete look",
)
METAL_TEMPLATES = (
    "with a {m} finish",
    "{m} touch, statement look",
    "shines with a {m} sheen",
    "a {m} glow that catches the light",
)
PATTERN_TEMPLATES = (
    "{p} vibes",
    "goes well with {p}",
    "a {p} mood for the weekend",
    "{p} is in this season",
)
#: Unambiguous clauses per attribute ("{v}" is always a span of that attribute).
CLAUSES: dict[str, tuple[str, ...]] = {
    "Color": ("this {v} piece", "comes in {v}", "available in {v}", "in a rich {v} shade"),
    "Style": ("{v} style", "a {v} look", "made for a {v} day"),
    "Collar Type": ("{v} design", "features a {v}", "cut with a {v}"),
    "Sleeve Length": ("{v} design", "a {v} cut", "{v} for easy layering"),
    "Closure": ("{v} closure", "fastens with {v}", "easy {v} fastening"),
    "Fit": ("{v}", "cut in a {v}", "a {v} silhouette"),
    "Material": ("made of {v}", "crafted from soft {v}", "{v} fabric"),
    "Pattern": ("{v} print", "features a {v} print"),
}
COLOR_STYLE_CLAUSES = ("this {c} {s} piece", "a {c} {s} favourite")
FILLERS = (
    "perfect for everyday wear", "a wardrobe essential", "new season arrival", "easy to care for",
    "a great gift idea", "designed for comfort", "limited stock", "loved by our customers",
)

LINK_TYPES = ("outfit", "metal", "pattern")
LINK_WEIGHTS = (0.4, 0.3, 0.3)

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, values: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill `{slot}`s; return the text and each slot's (begin, end)."""
    out: list[str] = []
    pos: dict[str, tuple[int, int]] = {}
    n = 0
    last = 0
    for m in _SLOT.finditer(template):
        lit = template[last:m.start()]
        out.append(lit)
        n += len(lit)
        v = values[m.group(1)]
        pos[m.group(1)] = (n, n + len(v))
        out.append(v)
        n += len(v)
        last = m.end()
    out.append(template[last:])
    return "".join(out), pos


# ---------------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Product:
    """Ground truth of one product. `product_type`, `color`, `material` when metallic and
    `pattern` are what the image shows; the rest is text-only."""

    cid: str
    product_type: str
    color: str
    material: str
    pattern: str | None = None
    attrs: tuple[tuple[str, str], ...] = ()   # text-only (attribute, value) pairs, incl. Style
    render_seed: int = 0
    twin: str | None = None
    links: tuple[str, ...] = ()
    text_silent: bool = False   # no text of it states its colour or pattern (image-only values)

    @property
    def metallic(self) -> bool:
        return self.material in METALS

    def implicit_values(self) -> dict[str, str | None]:
        """What only the image gives of a text-silent product: its fill colour (for a metallic
        material the base colour under the sheen, i.e. `color`) and its pattern (None: solid)."""
        return {"Color": self.color, "Pattern": self.pattern}

    def to_json(self) -> dict:
        d = asdict(self)
        d["attrs"] = dict(self.attrs)
        d["links"] = list(self.links)
        if not self.text_silent:
            del d["text_silent"]  # ordinary products: products.jsonl as before the field existed
        return d


def visual_key(product: Product) -> tuple:
    """What the rendered image shows: category, fill colour, metallic material, pattern."""
    return (product.product_type, product.color,
            product.material if product.metallic else None, product.pattern)


@dataclass
class _Draft:
    cat: str
    color: str
    material: str | None = None
    pattern: str | None = None
    links: list[str] = field(default_factory=list)


def _finish_product(rng: random.Random, d: _Draft, cid: str) -> Product:
    attrs = [("Style", rng.choice(STYLES))]
    for a, vals in CATEGORY_ATTRS[d.cat].items():
        attrs.append((a, rng.choice(vals)))
    material = d.material or rng.choice(FABRICS[d.cat])
    return Product(cid=cid, product_type=d.cat, color=d.color, material=material,
                   pattern=d.pattern, attrs=tuple(attrs), render_seed=rng.getrandbits(32),
                   links=tuple(d.links))


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------

def _maybe_filler(rng: random.Random, text: str, p: float = 0.3) -> str:
    if rng.random() < p:
        return f"{text}, {rng.choice(FILLERS)}"
    return text


_Shared = tuple[str, list[Span], list[Span]]  # text, spans for twin a, spans for twin b


def _outfit_sentence(rng: random.Random, a: Product, b: Product) -> _Shared:
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    tpl = rng.choice(OUTFIT_TEMPLATES)
    text, pos = _fill(tpl, {"c1": first.color, "n1": rng.choice(NOUNS[first.product_type]),
                            "c2": second.color, "n2": rng.choice(NOUNS[second.product_type])})
    text = _maybe_filler(rng, text)
    s1 = Span(*pos["c1"], "Color", first.color)
    s2 = Span(*pos["c2"], "Color", second.color)
    spans = {first.cid: [s1], second.cid: [s2]}
    return text, spans[a.cid], spans[b.cid]


def _metal_sentence(rng: random.Random, a: Product, b: Product) -> _Shared:
    metal = a.color if a.color in METALS else b.color
    text, pos = _fill(rng.choice(METAL_TEMPLATES), {"m": metal})
    text = _maybe_filler(rng, text)

    def label(p: Product) -> list[Span]:
        return [Span(*pos["m"], "Color" if p.color == metal else "Material", metal)]

    return text, label(a), label(b)


def _pattern_sentence(rng: random.Random, a: Product, b: Product) -> _Shared:
    pat = a.pattern or b.pattern
    assert pat is not None
    text, pos = _fill(rng.choice(PATTERN_TEMPLATES), {"p": pat})
    text = _maybe_filler(rng, text)

    def label(p: Product) -> list[Span]:
        return [Span(*pos["p"], "Pattern", pat)] if p.pattern == pat else []

    return text, label(a), label(b)


_LINK_SENTENCE = {"outfit": _outfit_sentence, "metal": _metal_sentence,
                  "pattern": _pattern_sentence}


#: How often an unambiguous sentence picks each kind of clause (text-only attributes favoured so
#: that they are frequent enough to learn).
_CLAUSE_WEIGHTS = {"Color": 1.0, "ColorStyle": 0.6, "Material": 1.0, "Pattern": 1.0,
                   "filler": 0.8}


def _clause_options(p: Product) -> tuple[list[tuple[str, str | None]], list[float]]:
    """(attribute, value) clauses an unambiguous sentence about `p` may use, and their weights;
    ("filler", None) is a clause without values. A text-silent product has no Color, ColorStyle
    or Pattern clause (no other clause or filler contains a colour or pattern word)."""
    opts: list[tuple[str, str | None]] = []
    if not p.text_silent:
        opts += [("Color", p.color), ("ColorStyle", p.color)]
    opts += list(p.attrs)
    if not p.metallic:
        opts.append(("Material", p.material))
    if p.pattern and not p.text_silent:
        opts.append(("Pattern", p.pattern))
    opts.append(("filler", None))
    return opts, [_CLAUSE_WEIGHTS.get(a, 2.0) for a, _ in opts]


def _plain_sentence(rng: random.Random, p: Product) -> tuple[str, list[Span]]:
    """An unambiguous sentence: 1-4 clauses whose labels follow from the text alone."""
    opts, weights = _clause_options(p)
    k = rng.choices((1, 2, 3, 4), weights=(0.15, 0.35, 0.35, 0.15))[0]
    chosen: list[tuple[str, str | None]] = []
    used: set[str] = set()
    for _ in range(30):
        if len(chosen) == k:
            break
        attr, val = rng.choices(opts, weights=weights)[0]
        fams = {"Color", "Style"} if attr == "ColorStyle" else {attr}
        if fams & used:
            continue
        used |= fams
        chosen.append((attr, val))
    style = dict(p.attrs)["Style"]
    text = ""
    spans: list[Span] = []
    for i, (attr, val) in enumerate(chosen):
        if i:
            text += rng.choice((", ", ", ", " and ")) if i == len(chosen) - 1 else ", "
        off = len(text)
        if attr == "filler":
            text += rng.choice(FILLERS)
            continue
        if attr == "ColorStyle":
            clause, pos = _fill(rng.choice(COLOR_STYLE_CLAUSES), {"c": p.color, "s": style})
            spans.append(Span(off + pos["c"][0], off + pos["c"][1], "Color", p.color))
            spans.append(Span(off + pos["s"][0], off + pos["s"][1], "Style", style))
        else:
            assert val is not None
            clause, pos = _fill(rng.choice(CLAUSES[attr]), {"v": val})
            spans.append(Span(off + pos["v"][0], off + pos["v"][1], attr, val))
        text += clause
    return text, spans


# ---------------------------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------------------------

@dataclass
class SyntheticCatalog:
    """Products (ground truth, sorted by cid) and records per split (sorted by id)."""

    products: list[Product]
    splits: dict[str, list[Record]]
    product_split: dict[str, str]

    @property
    def records(self) -> list[Record]:
        return [r for s in SPLITS for r in self.splits[s]]

    def product(self, cid: str) -> Product:
        return self._by_cid[cid]

    def __post_init__(self) -> None:
        self._by_cid = {p.cid: p for p in self.products}


def _check_args(n_products: int, sentences_per_product: Sequence[int],
                splits: Sequence[float], ambiguous_rate: float,
                text_silent_rate: float = 0.0) -> tuple[int, int]:
    if n_products < 1:
        raise ValueError(f"n_products must be >= 1, got {n_products}")
    lo, hi = (int(x) for x in sentences_per_product)
    if not 1 <= lo <= hi:
        raise ValueError("sentences_per_product must be (lo, hi) with 1 <= lo <= hi, "
                         f"got {sentences_per_product}")
    if len(splits) != 3 or any(x < 0 for x in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise ValueError(f"splits must be three non-negative fractions summing to 1, got {splits}")
    if not 0.0 <= ambiguous_rate <= 1.0:
        raise ValueError(f"ambiguous_rate must be in [0, 1], got {ambiguous_rate}")
    if not 0.0 <= text_silent_rate <= 1.0:
        raise ValueError(f"text_silent_rate must be in [0, 1], got {text_silent_rate}")
    return lo, hi


def _draft_couple(rng: random.Random, links: list[str]) -> tuple[_Draft, _Draft]:
    ca = rng.choice(CATEGORIES)
    cb = rng.choice([c for c in CATEGORIES if c != ca] if "outfit" in links else CATEGORIES)
    a, b = _Draft(ca, rng.choice(BASE_COLORS)), _Draft(cb, rng.choice(BASE_COLORS))
    if "metal" in links:
        # One twin is coloured with the metal, the other made of it (on a non-metal base colour).
        m = rng.choice(METALS)
        col, mat = (a, b) if rng.random() < 0.5 else (b, a)
        col.color = m
        mat.material = m
    if "pattern" in links:
        # One twin shows the pattern, the other is solid. A metallic twin is always solid.
        pat = rng.choice(PATTERNS)
        if a.material in METALS:
            b.pattern = pat
        elif b.material in METALS:
            a.pattern = pat
        else:
            (a if rng.random() < 0.5 else b).pattern = pat
    else:
        for d in (a, b):
            if d.material not in METALS and rng.random() < 0.25:
                d.pattern = rng.choice(PATTERNS)
    if "outfit" in links and a.color == b.color:
        # Keep the two colour words distinct; re-draw a non-metal one.
        target = b if b.color not in METALS else a
        target.color = rng.choice([c for c in BASE_COLORS if c != (a if target is b else b).color])
    a.links = list(links)
    b.links = list(links)
    return a, b


def build_catalog(n_products: int = 600, sentences_per_product: tuple[int, int] = (1, 3),
                  seed: int = 0, splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  ambiguous_rate: float = 0.95, text_silent_rate: float = 0.0) -> SyntheticCatalog:
    """Products and records, without rendering anything (see module docstring for the design).

    `ambiguous_rate` is the chance that each sentence slot two twins can share is an ambiguous
    shared sentence; 0 gives a catalog that text alone solves. `text_silent_rate` is the chance
    that a product is text-silent (no text states its colour or pattern; its records carry
    `extra["implicit_values"]`); it is drawn from its own random stream, so the main stream and
    (at 0) the whole catalog are unchanged.
    """
    lo, hi = _check_args(n_products, sentences_per_product, splits, ambiguous_rate,
                         text_silent_rate)
    rng = random.Random(seed)
    silent_rng = random.Random(seed * 7919 + 1)  # never touches `rng`

    def is_silent() -> bool:
        return silent_rng.random() < text_silent_rate
    ids = list(range(n_products))
    rng.shuffle(ids)
    width = max(5, len(str(n_products - 1)))
    cids = [f"p{i:0{width}d}" for i in ids]

    units: list[list[Product]] = []
    texts: dict[str, list[tuple[str, list[Span]]]] = {}
    k = 0
    for _ in range(n_products // 2):
        na, nb = rng.randint(lo, hi), rng.randint(lo, hi)
        slots = min(na, nb, len(LINK_TYPES))
        m = sum(rng.random() < ambiguous_rate for _ in range(slots))
        links: list[str] = []
        while len(links) < m:
            t = rng.choices(LINK_TYPES, weights=LINK_WEIGHTS)[0]
            if t not in links:
                links.append(t)
        links.sort(key=LINK_TYPES.index)
        da, db = _draft_couple(rng, links)
        silent_a, silent_b = is_silent(), is_silent()
        if silent_a or silent_b:
            # A couple with a text-silent twin shares no sentence (its looks, e.g. metal colour vs
            # metal material, are kept): shared sentences name colours and patterns.
            links = []
            da.links, db.links = [], []
        a = replace(_finish_product(rng, da, cids[k]), text_silent=silent_a)
        b = replace(_finish_product(rng, db, cids[k + 1]), text_silent=silent_b)
        a, b = replace(a, twin=b.cid), replace(b, twin=a.cid)
        k += 2
        ta: list[tuple[str, list[Span]]] = []
        tb: list[tuple[str, list[Span]]] = []
        for link in links:
            text, sa, sb = _LINK_SENTENCE[link](rng, a, b)
            ta.append((text, sa))
            tb.append((text, sb))
        for p, ts, n in ((a, ta, na), (b, tb, nb)):
            seen = {t for t, _ in ts}
            tries = 0
            while len(ts) < n and tries < 50:
                tries += 1
                text, spans = _plain_sentence(rng, p)
                if text not in seen:
                    seen.add(text)
                    ts.append((text, spans))
            rng.shuffle(ts)
            texts[p.cid] = ts
        units.append([a, b])
    if n_products % 2:
        d = _Draft(rng.choice(CATEGORIES), rng.choice(BASE_COLORS))
        if rng.random() < 0.25:
            d.pattern = rng.choice(PATTERNS)
        p = replace(_finish_product(rng, d, cids[k]), text_silent=is_silent())
        n = rng.randint(lo, hi)
        ts = []
        seen: set[str] = set()
        tries = 0
        while len(ts) < n and tries < 50:
            tries += 1
            text, spans = _plain_sentence(rng, p)
            if text not in seen:
                seen.add(text)
                ts.append((text, spans))
        texts[p.cid] = ts
        units.append([p])

    # Split by unit (a couple, or the odd singleton): twins share texts, so they stay together.
    order = list(range(len(units)))
    rng.shuffle(order)
    targets = [f * n_products for f in splits]
    product_split: dict[str, str] = {}
    counts = [0, 0, 0]
    for u in order:
        # Fill the split that is furthest below its target (ties: earlier split).
        deficits = [targets[i] - counts[i] for i in range(3)]
        i = max(range(3), key=lambda j: (deficits[j], -j))
        counts[i] += len(units[u])
        for p in units[u]:
            product_split[p.cid] = SPLITS[i]

    products = sorted((p for u in units for p in u), key=lambda p: p.cid)
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for p in products:
        for j, (text, spans) in enumerate(texts[p.cid]):
            extra = {"implicit_values": p.implicit_values()} if p.text_silent else {}
            out[product_split[p.cid]].append(Record(
                id=f"{p.cid}-{j}", text=text, spans=sorted(spans, key=lambda s: s.begin),
                cid=p.cid, category=COARSE_CATEGORY, image=f"images/{p.cid}.png", extra=extra))
    return SyntheticCatalog(products=products, splits=out, product_split=product_split)


def generate_records(n_products: int = 600, sentences_per_product: tuple[int, int] = (1, 3),
                     seed: int = 0, splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
                     ambiguous_rate: float = 0.95,
                     text_silent_rate: float = 0.0) -> dict[str, list[Record]]:
    """The records of `generate_catalog` in memory, per split (no images are rendered)."""
    return build_catalog(n_products, sentences_per_product, seed, splits, ambiguous_rate,
                         text_silent_rate).splits


@dataclass(frozen=True)
class CatalogInfo:
    """What `generate_catalog` wrote, and its statistics."""

    out_dir: Path
    seed: int
    n_products: int
    image_size: int
    files: dict[str, Path]            # split -> jsonl
    products_file: Path               # ground truth for debugging; models must not read it
    images_dir: Path
    n_records: dict[str, int]
    n_split_products: dict[str, int]
    summary: dict                     # catalog_summary over all records
    render_ms_per_image: float        # mean wall time of render_product (not of PNG encoding)
    text_silent_rate: float = 0.0


def generate_catalog(out_dir: str | Path, n_products: int = 600,
                     sentences_per_product: tuple[int, int] = (1, 3), seed: int = 0,
                     image_size: int = 224, splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
                     ambiguous_rate: float = 0.95, text_silent_rate: float = 0.0) -> CatalogInfo:
    """Write `images/<cid>.png`, `{train,valid,test}.jsonl` and `products.jsonl` under `out_dir`.

    Same arguments, byte-identical files. Existing files of the same names are overwritten; other
    files in `out_dir` are left alone.
    """
    cat = build_catalog(n_products, sentences_per_product, seed, splits, ambiguous_rate,
                        text_silent_rate)
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    render_s = 0.0
    for p in cat.products:
        t0 = time.perf_counter()
        img = render_product(p, image_size)
        render_s += time.perf_counter() - t0
        img.save(img_dir / f"{p.cid}.png", format="PNG", compress_level=3)
    files = {}
    for s in SPLITS:
        path = out / f"{s}.jsonl"
        write_records(cat.splits[s], path, "jsonl")
        files[s] = path
    pfile = out / "products.jsonl"
    with atomic_write(pfile, newline="\n") as f:
        for p in cat.products:
            f.write(json.dumps({**p.to_json(), "split": cat.product_split[p.cid]},
                               ensure_ascii=False) + "\n")
    split_counts = Counter(cat.product_split.values())
    return CatalogInfo(out_dir=out, seed=seed, n_products=n_products, image_size=image_size,
                       files=files, products_file=pfile, images_dir=img_dir,
                       n_records={s: len(cat.splits[s]) for s in SPLITS},
                       n_split_products={s: split_counts.get(s, 0) for s in SPLITS},
                       summary=catalog_summary(cat.records),
                       render_ms_per_image=1000 * render_s / max(1, len(cat.products)),
                       text_silent_rate=text_silent_rate)


def load_products(path: str | Path) -> dict[str, Product]:
    """Read `products.jsonl` back (for tests and debugging)."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        d.pop("split", None)
        d["attrs"] = tuple(d["attrs"].items())
        d["links"] = tuple(d["links"])
        out[d["cid"]] = Product(**d)
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

BACKGROUND = (236, 233, 226)


def _silhouette(cat: str) -> list[tuple]:
    """Unit-square primitives of a category's silhouette; ("cut", ...) primitives are erased."""
    if cat == "shirt":
        return [("poly", [(0.37, 0.10), (0.63, 0.10), (0.82, 0.16), (0.98, 0.46), (0.84, 0.54),
                          (0.75, 0.38), (0.76, 0.94), (0.24, 0.94), (0.25, 0.38), (0.16, 0.54),
                          (0.02, 0.46), (0.18, 0.16)]),
                ("cut", ("ellipse", (0.41, 0.04, 0.59, 0.17)))]
    if cat == "dress":
        return [("poly", [(0.33, 0.06), (0.41, 0.06), (0.50, 0.14), (0.59, 0.06), (0.67, 0.06),
                          (0.70, 0.40), (0.97, 0.96), (0.03, 0.96), (0.30, 0.40)])]
    if cat == "pants":
        return [("poly", [(0.18, 0.05), (0.82, 0.05), (0.86, 0.95), (0.55, 0.95), (0.50, 0.40),
                          (0.45, 0.95), (0.14, 0.95)])]
    if cat == "shoes":
        def shoe(dx: float, dy: float) -> tuple:
            pts = [(0.03, 0.06), (0.30, 0.00), (0.42, 0.10), (0.70, 0.16), (0.90, 0.24),
                   (0.96, 0.32), (0.96, 0.40), (0.03, 0.40)]
            return ("poly", [(x * 0.96 + dx, y + dy) for x, y in pts])
        return [shoe(0.0, 0.10), shoe(0.02, 0.52)]
    if cat == "bag":
        return [("arc", (0.26, 0.04, 0.74, 0.56), 0.07),
                ("rrect", (0.06, 0.30, 0.94, 0.96), 0.06)]
    raise ValueError(f"unknown category {cat!r}")


def _draw_prims(draw: ImageDraw.ImageDraw, prims: Iterable[tuple], size: int, scale: float,
                dx: float, dy: float) -> None:
    def tx(x: float, y: float) -> tuple[float, float]:
        return ((0.5 + (x - 0.5) * scale + dx) * size, (0.5 + (y - 0.5) * scale + dy) * size)

    for prim in prims:
        fill = 255
        if prim[0] == "cut":
            prim, fill = prim[1], 0
        kind = prim[0]
        if kind == "poly":
            draw.polygon([tx(x, y) for x, y in prim[1]], fill=fill)
        elif kind in ("ellipse", "rrect", "arc"):
            x0, y0 = tx(prim[1][0], prim[1][1])
            x1, y1 = tx(prim[1][2], prim[1][3])
            if kind == "ellipse":
                draw.ellipse((x0, y0, x1, y1), fill=fill)
            elif kind == "rrect":
                draw.rounded_rectangle((x0, y0, x1, y1), radius=prim[2] * size * scale, fill=fill)
            else:
                draw.arc((x0, y0, x1, y1), 180, 360, fill=fill,
                         width=max(1, round(prim[2] * size * scale)))


def _contrast(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (250, 250, 250) if lum < 140 else (35, 35, 35)


def _draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, size: int, ink: tuple[int, int, int],
                  rng: np.random.Generator) -> None:
    """Overlay `pattern` over the whole layer (it is masked by the silhouette afterwards)."""
    period = size / rng.uniform(7.5, 9.5)
    off = rng.uniform(0, period)
    n = int(size / period) + 2
    if pattern == "striped":
        w = period * 0.38
        for i in range(-1, n):
            y = off + i * period
            draw.rectangle((0, y, size, y + w), fill=ink)
    elif pattern == "plaid":
        w, t = period * 0.12, max(1.0, period * 0.05)
        for i in range(-1, n):
            p = off + i * period
            draw.rectangle((0, p, size, p + w), fill=ink)
            draw.rectangle((p, 0, p + w, size), fill=ink)
            q = p + period * 0.6
            draw.rectangle((0, q, size, q + t), fill=ink)
            draw.rectangle((q, 0, q + t, size), fill=ink)
    elif pattern == "checked":
        c = period * 0.5
        s = c * 0.8
        for i in range(-1, 2 * n):
            for j in range(-1, 2 * n):
                if (i + j) % 2 == 0:
                    x, y = off + i * c - c, off + j * c - c
                    draw.rectangle((x, y, x + s, y + s), fill=ink)
    elif pattern == "polka dot":
        r = period * 0.24
        for i in range(-1, n):
            for j in range(-1, n):
                x = off + i * period + (period / 2 if j % 2 else 0)
                y = off + j * period * 0.87
                draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    elif pattern == "floral":
        r = period * 0.13
        step = period * 1.15
        m = int(size / step) + 2
        for i in range(-1, m):
            for j in range(-1, m):
                cx = off + i * step + (step / 2 if j % 2 else 0)
                cy = off + j * step
                for k in range(5):
                    a = 2 * np.pi * k / 5
                    px, py = cx + 1.7 * r * np.cos(a), cy + 1.7 * r * np.sin(a)
                    draw.ellipse((px - r, py - r, px + r, py + r), fill=ink)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")


def _draw_sheen(draw: ImageDraw.ImageDraw, metal: str, size: int, rng: np.random.Generator) -> None:
    """Dense bright diagonal stripes in the metal's colour, each with a lighter highlight line."""
    rgb = COLORS[metal]
    hi = tuple(min(255, int(c + (255 - c) * 0.55)) for c in rgb)
    period = size / rng.uniform(9.0, 11.0)
    w = period * 0.36
    off = rng.uniform(0, period)
    for i in range(-2, int(2 * size / period) + 3):
        x = off + i * period
        draw.polygon([(x, 0), (x + w, 0), (x + w - size, size), (x - size, size)], fill=rgb)
        h = w * 0.25
        draw.polygon([(x + w * 0.35, 0), (x + w * 0.35 + h, 0), (x + w * 0.35 + h - size, size),
                      (x + w * 0.35 - size, size)], fill=hi)


def render_product(product: Product, size: int = 224) -> Image.Image:
    """The product image: light noisy background, the category silhouette (~40-60% of the pixels)
    filled with the product colour, a contrasting pattern or a metallic sheen, a darker outline.

    Deterministic given the product (its `render_seed` draws the jitter and the noise).
    """
    rng = np.random.default_rng(product.render_seed)
    scale = rng.uniform(0.92, 1.0)
    dx, dy = rng.uniform(-0.025, 0.025, size=2)
    mask = Image.new("L", (size, size), 0)
    _draw_prims(ImageDraw.Draw(mask), _silhouette(product.product_type), size, scale, dx, dy)

    base = COLORS[product.color]
    layer = Image.new("RGB", (size, size), base)
    if product.pattern:
        _draw_pattern(ImageDraw.Draw(layer), product.pattern, size, _contrast(base), rng)
    elif product.metallic:
        _draw_sheen(ImageDraw.Draw(layer), product.material, size, rng)

    tint = rng.integers(-4, 5, size=3)
    bg = tuple(int(c + t) for c, t in zip(BACKGROUND, tint))
    img = Image.new("RGB", (size, size), bg)
    img.paste(layer, (0, 0), mask)
    edge = mask.filter(ImageFilter.FIND_EDGES)
    img.paste(tuple(int(c * 0.5) for c in base), (0, 0), edge)

    arr = np.asarray(img, dtype=np.int16)
    noise = rng.integers(-5, 6, size=(size, size, 1), dtype=np.int16)
    arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def dominant_palette_color(img: Image.Image, max_dist: float = 40.0) -> str | None:
    """The palette colour (`COLORS`) covering most pixels within `max_dist` (RGB distance)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32).reshape(-1, 3)
    names = list(COLORS)
    pal = np.array([COLORS[n] for n in names], dtype=np.float32)
    d = np.linalg.norm(arr[:, None, :] - pal[None, :, :], axis=2)
    best = d.argmin(axis=1)
    ok = d[np.arange(len(arr)), best] <= max_dist
    counts = np.bincount(best[ok], minlength=len(names))
    return names[int(counts.argmax())] if counts.max() > 0 else None


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------

def _span_set(r: Record) -> frozenset:
    return frozenset(s.key() for s in r.spans)


def ambiguous_texts(records: Sequence[Record]) -> set[str]:
    """Texts that occur with more than one gold span set."""
    sets: dict[str, set[frozenset]] = defaultdict(set)
    for r in records:
        sets[r.text].add(_span_set(r))
    return {t for t, s in sets.items() if len(s) > 1}


def oracle_f1(records: Sequence[Record],
              key: Callable[[Record], Hashable] = lambda r: r.text) -> float:
    """Micro span F1 of the best predictor that sees only `key(record)`.

    Records are grouped by key; for each group and candidate span (attr, begin, end), `tp` is the
    number of records of the group whose gold has it and `n` the group size. Predicting a set of
    candidates gives F1 = 2*TP / (2*TP + FP + FN) = 2*sum(tp) / (sum(n) + G) with G the number of
    gold spans, a linear-fractional objective whose optimum takes the candidates in decreasing
    order of tp/n (a prefix); we scan all prefixes. Overlapping candidates of one group (e.g. Color
    and Material on the same word) cannot both be tagged: only the most frequent is kept.
    """
    groups: dict[Hashable, list[Record]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    gold = sum(len(r.spans) for r in records)
    if gold == 0:
        return 1.0
    cands: list[tuple[float, int, int]] = []  # (-p, tp, n)
    for g in groups.values():
        c = Counter(k for r in g for k in _span_set(r))
        kept: list[tuple[str, int, int]] = []
        for k, tp in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])):
            if all(k[2] <= o[1] or o[2] <= k[1] for o in kept):
                kept.append(k)
                cands.append((-tp / len(g), tp, len(g)))
    cands.sort()
    best = 0.0
    tp_sum = n_sum = 0
    for _, tp, n in cands:
        tp_sum += tp
        n_sum += n
        best = max(best, 2 * tp_sum / (n_sum + gold))
    return best


def text_only_ceiling(records: Sequence[Record]) -> float:
    """Best expected micro span F1 of a perfect text-only model (records grouped by text)."""
    return oracle_f1(records, key=lambda r: r.text)


def catalog_summary(records: Sequence[Record]) -> dict:
    """Counts per attribute and how much of the catalog only the image can resolve."""
    amb = ambiguous_texts(records)
    n_spans = sum(len(r.spans) for r in records)
    amb_recs = [r for r in records if r.text in amb]
    amb_spans = sum(len(r.spans) for r in amb_recs)
    per_attr = Counter(s.attr for r in records for s in r.spans)
    amb_attr = Counter(s.attr for r in amb_recs for s in r.spans)
    silent = [r for r in records if "implicit_values" in r.extra]
    return {
        "records": len(records),
        "products": len({r.product_id for r in records}),
        "spans": n_spans,
        "spans_per_attribute": dict(sorted(per_attr.items())),
        "ambiguous_spans_per_attribute": dict(sorted(amb_attr.items())),
        "records_without_spans": sum(1 for r in records if not r.spans),
        "distinct_texts": len({r.text for r in records}),
        "ambiguous_records": len(amb_recs),
        "ambiguous_record_share": len(amb_recs) / len(records) if records else 0.0,
        "ambiguous_spans": amb_spans,
        "ambiguous_span_share": amb_spans / n_spans if n_spans else 0.0,
        "text_only_ceiling": text_only_ceiling(records),
        "text_silent_products": len({r.product_id for r in silent}),
        "text_silent_records": len(silent),
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the synthetic M-JAVE demo catalog.")
    ap.add_argument("out_dir")
    ap.add_argument("--n-products", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--ambiguous-rate", type=float, default=0.95)
    ap.add_argument("--text-silent-rate", type=float, default=0.0,
                    help="share of products whose texts never state their colour or pattern")
    a = ap.parse_args(argv)
    info = generate_catalog(a.out_dir, n_products=a.n_products, seed=a.seed,
                            image_size=a.image_size, ambiguous_rate=a.ambiguous_rate,
                            text_silent_rate=a.text_silent_rate)
    print(json.dumps({"n_records": info.n_records, "n_split_products": info.n_split_products,
                      "render_ms_per_image": round(info.render_ms_per_image, 3),
                      **info.summary}, indent=2))


if __name__ == "__main__":
    main()
