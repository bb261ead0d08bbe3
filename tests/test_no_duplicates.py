"""No block of the same logic stands twice in ``gpt2graph/`` or ``renderers/``: no run of ``MIN_LINES`` consecutive
significant lines is the same in two places (two files, or two places of one file).

A line is compared after normalising: its comment dropped and its white space folded. Lines that carry no logic of
their own are passed over: blank lines, comments, lone punctuation (the ``)`` closing a call) and import
statements (the same names are imported wherever they are used). Docstrings count: prose copied from one place to
another restates a concept too.

When this fails, make the two places one (a shared function, a base class, a re-exported list, a function bound
as a method) rather than listing the pair as allowed.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_LINES = 6
_PUNCTUATION = re.compile(r"[()\[\]{},:;.]*")


@dataclass(frozen=True)
class Repeat:
    """Lines ``a_lines`` of file ``a`` stand again as lines ``b_lines`` of file ``b`` (first and last, 1-based)."""

    a: str
    a_lines: tuple[int, int]
    b: str
    b_lines: tuple[int, int]

    def __str__(self) -> str:
        return f"{self.a}:{self.a_lines[0]}-{self.a_lines[1]} ~ {self.b}:{self.b_lines[0]}-{self.b_lines[1]}"


def significant(source: str) -> list[tuple[int, str]]:
    """(line number, normalised text) of every line of ``source`` that carries logic."""
    lines = source.splitlines()
    passed = {
        n
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }
    comment_at: dict[int, int] = {}  # line -> column where its comment starts
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comment_at[tok.start[0]] = tok.start[1]
    out = []
    for n, line in enumerate(lines, 1):
        text = " ".join(line[: comment_at.get(n)].split())
        if n not in passed and not _PUNCTUATION.fullmatch(text):
            out.append((n, text))
    return out


def repeats(sources: dict[str, str], min_lines: int = MIN_LINES) -> list[Repeat]:
    """Every maximal run of at least ``min_lines`` significant lines that stands in two places of ``sources``
    (name -> source), once per pair of places."""
    lines = {name: significant(source) for name, source in sources.items()}
    places: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for name, sig in lines.items():
        for i in range(len(sig) - min_lines + 1):
            places[tuple(text for _, text in sig[i : i + min_lines])].append((name, i))
    windows = sorted(
        (a, i, b, j)
        for found in places.values()
        for k, (a, i) in enumerate(found)
        for b, j in found[k + 1 :]
        if a != b or j - i >= min_lines  # a run overlapping itself is one place
    )
    runs: list[list] = []  # [a, first window in a, b, first window in b, windows in the run]
    for a, i, b, j in windows:
        last = runs[-1] if runs else None
        if last and (last[0], last[2]) == (a, b) and (last[1] + last[4], last[3] + last[4]) == (i, j):
            last[4] += 1
        else:
            runs.append([a, i, b, j, 1])
    out = []
    for a, i, b, j, n in runs:
        span = n + min_lines - 1
        first_last = [(lines[f][k][0], lines[f][k + span - 1][0]) for f, k in ((a, i), (b, j))]
        out.append(Repeat(a, first_last[0], b, first_last[1]))
    return out


def _sources() -> dict[str, str]:
    files = [*(ROOT / "gpt2graph").rglob("*.py"), *(ROOT / "renderers").rglob("*.py")]
    return {
        str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
        for p in sorted(files)
        if "build" not in p.relative_to(ROOT).parts
    }


def test_no_block_of_logic_stands_twice():
    found = repeats(_sources())
    assert not found, (
        f"the same {MIN_LINES}+ lines stand in two places; make them one (a shared function, a base class, a "
        "re-exported list, a function bound as a method):\n" + "\n".join(map(str, found))
    )


# ---- the detector itself -------------------------------------------------------------------------------------
BLOCK = '''
def {name}(rows, scale):
    """{doc}"""
    out = []
    for row in rows:  # {comment}
        if not row:
            continue
        out.append(row * scale)
    total = sum(out)
    return [x / total for x in out]
'''


def test_it_finds_a_block_copied_into_another_file(tmp_path):
    (tmp_path / "a.py").write_text("import os\n\nX = 1\n" + BLOCK.format(name="f", doc="One.", comment="a"))
    (tmp_path / "b.py").write_text(
        "from a import X\n" + BLOCK.format(name="g", doc="Two.", comment="b").replace("out = []", "out  =   []")
    )
    found = repeats({p.name: p.read_text() for p in (tmp_path / "a.py", tmp_path / "b.py")})
    # the def and docstring lines differ; the seven from `out = []` to the return are the same logic
    assert [str(r) for r in found] == ["a.py:7-13 ~ b.py:5-11"]


def test_it_finds_a_block_standing_twice_in_one_file():
    found = repeats({"m.py": BLOCK.format(name="f", doc="", comment="") + BLOCK.format(name="g", doc="", comment="")})
    assert [str(r) for r in found] == ["m.py:3-10 ~ m.py:13-20"]  # the same (empty) docstring counts too


def test_it_passes_over_what_carries_no_logic():
    """Five lines of logic in common, between lines that carry none: no repeat; a sixth makes one."""
    five = "x = 1\n\n# a note\ny = f(\n    x,\n)\nimport os\nfrom m import (\n    a,\n    b,\n)\nz = 3  # why\nw = 4\n"
    a, b = "before = 0\n" + five + "after = 0\n", "first = 0\n" + five.replace("# why", "# how") + "last = 0\n"
    assert repeats({"a.py": a, "b.py": b}) == []
    six = repeats({"a.py": a.replace("after = 0", "v = 5"), "b.py": b.replace("last = 0", "v = 5")})
    assert [str(r) for r in six] == ["a.py:2-15 ~ b.py:2-15"]
