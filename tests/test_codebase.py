"""Rules about the code itself, checked on its source: each concept is stated in one place.

Node ids are composed and parsed only in ``gpt2graph/topology.py``: a string literal anywhere else in the
package or the renderers that holds a fragment of an id (``op:``, ``hook_``, ``blocks.``, ``decode.``, a
parameter's module path) means an id is being built or taken apart by hand, and would drift from the
topology's. Docstrings and the ``description=``/``help=`` texts of data models are prose and may quote ids.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: where ids are built and parsed
TOPOLOGY = ROOT / "gpt2graph" / "topology.py"
#: fragments of node ids: the op prefix, hook names, layer paths, the decoding stage, parameter module paths
ID_FRAGMENT = re.compile(r"\bop:|hook_|\bblocks\.|\bdecode\.|\bln_final\.|\b(?:un)?embed\.|\bpos_embed\.")


def _sources() -> list[Path]:
    files = [*(ROOT / "gpt2graph").rglob("*.py"), *(ROOT / "renderers").rglob("*.py")]
    return sorted(p for p in files if p != TOPOLOGY and "build" not in p.relative_to(ROOT).parts)


def _prose(tree: ast.AST) -> set[int]:
    """ids of the AST nodes that are prose: docstrings and ``description=`` / ``help=`` keyword values."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in ("description", "help"):
            out |= {id(n) for n in ast.walk(node.value)}
    return out


def id_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in ``source`` that holds a fragment of a node id, prose excepted."""
    tree = ast.parse(source)
    prose = _prose(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in prose
        and ID_FRAGMENT.search(node.value)
    ]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_ids_are_composed_only_in_the_topology(path):
    found = id_literals(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.relative_to(ROOT)} composes or parses node ids by hand (use gpt2graph.topology: vector_id, "
        f"param_id, op_id, parse): " + "; ".join(f"line {line}: {text!r}" for line, text in found)
    )


def test_javascript_composes_no_ids():
    for path in (ROOT / "renderers").rglob("*.js"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"[\"'`](?:op:|[\w.]*hook_)", text), path


@pytest.mark.parametrize(
    "source",
    [
        'op_id = "op:" + node_id',
        'name = f"blocks.{layer}.attn.hook_q"',
        "node_id[3:] if node_id.startswith('op:') else node_id",
        'graph.values(f"decode.next_token[{p}]")',
        'tied = "embed.W_E"',
    ],
)
def test_the_id_check_sees_ids_composed_by_hand(source):
    assert id_literals(source)


def test_the_id_check_leaves_prose_alone():
    source = '''
def f():
    """Reads blocks.0.attn.hook_q[1,3] and op:hook_embed[0]."""
    return Field(description="e.g. blocks.3.attn.hook_q[5,2]")
'''
    assert id_literals(source) == []


# ---- the renderer API ----------------------------------------------------------------------------------------
def _plugin_imports(source: str) -> list[tuple[int, str]]:
    """(line, what) of every use of gpt2graph in ``source`` outside the renderer API: imports from any module
    but ``gpt2graph`` and ``gpt2graph.plugin``, names those modules do not list in ``__all__``, and attributes
    of the package reached through ``import gpt2graph``."""
    import gpt2graph
    import gpt2graph.plugin

    allowed = {"gpt2graph": set(gpt2graph.__all__), "gpt2graph.plugin": set(gpt2graph.plugin.__all__)}
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gpt2graph":
            names = allowed.get(node.module)
            if names is None:
                bad.append((node.lineno, f"from {node.module} import ..."))
            else:
                bad += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if a.name not in names]
        elif isinstance(node, ast.Import):
            bad += [(node.lineno, f"import {a.name}") for a in node.names if a.name.startswith("gpt2graph.")]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "gpt2graph"
            and node.attr not in allowed["gpt2graph"] | {"plugin"}
        ):
            bad.append((node.lineno, f"gpt2graph.{node.attr}"))
    return bad


def _plugin_sources() -> list[Path]:
    return sorted(p for p in (ROOT / "renderers").rglob("*.py") if "build" not in p.relative_to(ROOT).parts)


@pytest.mark.parametrize("path", _plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_use_only_the_renderer_api(path):
    found = _plugin_imports(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.relative_to(ROOT)} reaches past the renderer API (gpt2graph.plugin and gpt2graph's __all__): "
        + "; ".join(f"line {line}: {what}" for line, what in found)
    )


def test_the_plugin_check_sees_imports_past_the_api():
    source = """
import gpt2graph
import gpt2graph.ops
from gpt2graph.topology import Key
from gpt2graph import storage
from gpt2graph.plugin import Key, _private
gpt2graph.lens.lens_logits
"""
    assert [line for line, _ in _plugin_imports(source)] == [3, 4, 5, 6, 7]
    assert _plugin_imports("import gpt2graph\nfrom gpt2graph import Graph\nfrom gpt2graph.plugin import Key\n") == []


def test_the_renderer_api_exists_as_declared():
    import gpt2graph.plugin

    assert all(hasattr(gpt2graph.plugin, name) for name in gpt2graph.plugin.__all__)
    assert len(set(gpt2graph.plugin.__all__)) == len(gpt2graph.plugin.__all__)
