"""Glossary and annotation data: the built-in files, the invalid and valid examples under tests/data, coverage of
the schema's kinds, safe and bounded loading, and user annotations on a live (tiny) graph."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import PROMPT

import gpt2graph
from gpt2graph.cli import main
from gpt2graph.errors import DataValidationError
from gpt2graph.glossary import (
    Annotation,
    Glossary,
    GlossaryEntry,
    Selector,
    builtin_glossary,
    data_dir,
    load_glossary,
    read_user_file,
    validate_files,
)
from gpt2graph.graph import Graph
from gpt2graph.schema import OpKind, ParameterNode, ParamKind, Stage, VectorKind, VectorNode

EXAMPLES = Path(__file__).resolve().parent / "data"
BUILTIN = sorted(data_dir().rglob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
VALID = sorted((EXAMPLES / "valid").glob("*.yaml"))

INDUCTION = """\
annotations:
  - id: head-1-2-induction
    title: "Head 1.2 is an induction head"
    body: |
      On 20 random tokens repeated twice, head 1.2 puts 0.91 of its attention on the token after the
      earlier copy of the current token; ablating it raises the loss on the second copy by 0.3 nats.
    caption: "{n_tokens} x {d_model}"
    glossary: [induction-head]
    targets:
      - kind: [attn_pattern, head_out]
        layer: 1
        head: 2
"""


def fresh(graph: Graph) -> Graph:
    """A new Graph over the same run, so annotating it leaves the shared fixture untouched."""
    return Graph(graph.header, graph.store, graph.vocab)


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- the built-in data ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_builtin_file_validates(path):
    assert validate_files([path]) == []


def test_builtin_glossary_has_the_promised_entries():
    glossary = builtin_glossary()
    assert len(glossary) >= 50
    assert all(entry.sources for entry in glossary.values()), "every built-in entry cites a source"
    for concept in (
        "bpe-tokenization",
        "residual-stream",
        "layernorm",
        "attention-head",
        "causal-mask",
        "qk-circuit",
        "ov-circuit",
        "induction-head",
        "previous-token-head",
        "attention-sink",
        "superposition",
        "logit-lens",
        "direct-logit-attribution",
        "tied-embeddings",
        "activation-patching",
        "n-vocab",
        "n-ctx",
        "d-model",
        "d-head",
        "d-mlp",
        "n-head",
        "n-layer",
    ):
        assert concept in glossary


@pytest.mark.parametrize("kind", [*VectorKind, *OpKind, *ParamKind], ids=str)
def test_every_schema_kind_is_explained_by_an_entry(kind):
    assert any(kind in (sel.kind or ()) for entry in builtin_glossary().values() for sel in entry.applies_to)


def test_every_link_resolves():
    glossary = builtin_glossary()
    links = [ref for e in glossary.values() for ref in e.see_also]
    links += [ref for a in glossary.annotations for ref in a.glossary]
    assert links and [ref for ref in links if ref not in glossary] == []


def test_builtin_entries_do_not_name_heads_of_one_model():
    """Built-in data applies to every graph, a 2-layer test model included: specific heads belong in prose."""
    selectors = [s for e in builtin_glossary().values() for s in e.applies_to]
    assert [s for s in selectors if s.layer is not None or s.head is not None] == []


def test_annotations_cover_every_stage_and_name_the_terminology(tiny_graph):
    glossary = builtin_glossary()
    covered = {node.stage for node in tiny_graph.nodes() if glossary.annotations_for(node, tiny_graph)}
    assert covered == set(Stage)
    decode = {
        node.kind
        for node in tiny_graph.nodes()
        if node.stage == Stage.decode and glossary.annotations_for(node, tiny_graph)
    }
    assert decode == {
        "scaled_logits",
        "top_k_logits",
        "top_p_logits",
        "probs",
        "next_token",
        "temperature",
        "top_k",
        "top_p",
        "softmax",
        "sample",
    }
    assert "terminology" in {a.id for a in glossary.annotations}


def test_builtin_selectors_all_select_something_in_a_tiny_graph(tiny_graph):
    assert validate_files(BUILTIN, graph=tiny_graph) == []


# ---- examples ---------------------------------------------------------------------------------------------
def expectation(path: Path) -> str:
    line = path.read_text(encoding="utf-8").splitlines()[1]
    assert line.startswith("# expect: :"), f"{path}: line 2 must be '# expect: :LINE:COL: message'"
    return line.removeprefix("# expect: ")


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_example_fails_with_its_message(path):
    problems = validate_files([path])
    wanted = f"{path}{expectation(path)}"
    assert any(p.startswith(wanted) for p in problems), f"expected {wanted!r} among {problems}"
    with pytest.raises(DataValidationError):
        read_user_file(path)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_example_passes(path):
    assert validate_files([path]) == []


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        """\
glossary:
  - id: Bad_Id
    term: Bad
    summary: One.
    body: Two.
    see_also: [nowhere]
annotations:
  - id: note
    title: "{n_token}"
    body: text
    colour: red
    targets:
      - kind: attn_patern
""",
    )
    with pytest.raises(DataValidationError) as info:
        read_user_file(path)
    problems = info.value.problems
    assert sorted(p.split(": ", 2)[1] for p in problems) == [
        "annotations[0].colour",
        "annotations[0].targets[0].kind",
        "annotations[0].title",
        "glossary[0].id",
    ]
    assert all(p.startswith(f"{path}:") for p in problems)


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]  # 10**12 strings
    path = write(tmp_path, "\n".join(lines) + "\nglossary: *a11\n")
    start = time.perf_counter()
    problems = validate_files([path])
    assert time.perf_counter() - start < 2
    assert len(problems) == 1 and "refused: the document expands to more than" in problems[0]


def test_python_object_tags_are_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, f'glossary: !!python/object/apply:os.system ["touch {marker}"]\n')
    problems = validate_files([path])
    assert not marker.exists()
    assert problems == [
        f"{path}:1:11: refused: tag !!python/object/apply:os.system is not allowed (data files "
        "hold only strings, numbers, booleans, lists and mappings)"
    ]


def test_unreadable_files_are_clear_errors(tmp_path):
    for path, reason in (
        (tmp_path / "missing.yaml", "cannot read: No such file or directory"),
        (tmp_path, "refused: a directory, not a regular file"),
        ("/dev/zero", "refused: a character device, not a regular file"),
    ):
        with pytest.raises(DataValidationError, match=reason):
            read_user_file(path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"glossary: \xff\xfe\n")
    with pytest.raises(DataValidationError, match="not UTF-8"):
        read_user_file(binary)


# ---- the model objects ------------------------------------------------------------------------------------
def test_selector_matching():
    node = VectorNode(
        id="blocks.1.attn.hook_pattern[2,3]",
        kind="attn_pattern",
        category="attention",
        stage="attention",
        layer=1,
        head=2,
        position=3,
        space="keys",
        shape=[4],
        hook=None,
        index=[2, 3],
    )
    embed = ParameterNode(id="embed.W_E", kind="W_E", stage="embed", shape=[10, 4], n_params=40)
    assert Selector(kind=["q", "attn_pattern"], layer=1, head=2).matches(node)
    assert Selector(kind="attn_pattern", stage="attention", category="attention", position=3).matches(node)
    assert Selector(id="blocks.1.attn.hook_pattern[2,3]").matches(node)
    assert not Selector(kind="attn_pattern", head=1).matches(node)
    assert not Selector(layer=0).matches(embed), "a node without a layer never matches a given layer"
    assert Selector(category="parameter", stage="embed").matches(embed)
    with pytest.raises(ValueError, match="empty selector"):
        Selector()


def test_lookup_by_id_term_or_alias_and_suggestions():
    glossary = builtin_glossary()
    assert glossary.lookup("RESIDUAL STREAM").id == "residual-stream"
    assert glossary.lookup("residual-stream").id == "residual-stream"
    assert glossary.lookup("w_q").id == "query"
    assert glossary.lookup("no such thing") is None
    assert "residual-stream" in glossary.suggest("residul stream")
    with pytest.raises(KeyError, match="did you mean 'residual-stream'"):
        glossary["residual-steam"]


def test_entries_for_a_node(tiny_graph):
    ids = [e.id for e in tiny_graph.glossary_for("blocks.1.hook_resid_pre[0]")]
    assert "residual-stream" in ids
    assert "attention-sink" in [e.id for e in tiny_graph.glossary_for("blocks.1.attn.hook_pattern[0,0]")]
    assert "attention-sink" not in [e.id for e in tiny_graph.glossary_for("blocks.1.attn.hook_pattern[0,3]")]


def test_text_is_stored_as_written(tmp_path, tiny_graph):
    text = INDUCTION.replace("head 1.2 puts", "head <b>1.2</b> & co. put")
    graph = fresh(tiny_graph).annotate(write(tmp_path, text))
    assert graph.header.user_data[-1].text == text
    (note,) = graph.annotations_for("blocks.1.attn.hook_pattern[2,4]")[-1:]
    assert "head <b>1.2</b> & co. put" in note.body


# ---- users' files on a graph ------------------------------------------------------------------------------
def test_user_annotation_labels_an_induction_head(tmp_path, tiny_graph):
    graph = fresh(tiny_graph).annotate(write(tmp_path, INDUCTION))
    ours = [a for a in graph.annotations_for("blocks.1.attn.hook_pattern[2,4]") if a.id == "head-1-2-induction"]
    assert len(ours) == 1
    assert ours[0].title == "Head 1.2 is an induction head" and "0.91 of its attention" in ours[0].body
    assert ours[0].glossary == ("induction-head",)
    assert not [a for a in graph.annotations_for("blocks.1.attn.hook_pattern[1,4]") if a.id == "head-1-2-induction"]
    assert not [
        a for a in tiny_graph.annotations_for("blocks.1.attn.hook_pattern[2,4]") if a.id == "head-1-2-induction"
    ], "the shared fixture is untouched"


def test_templates_are_filled_from_the_run(tmp_path, tiny_graph):
    graph = fresh(tiny_graph).annotate(
        write(
            tmp_path,
            INDUCTION.replace(
                'caption: "{n_tokens} x {d_model}"', 'caption: "{n_tokens} x {d_model}; {n_params} params in {model}"'
            ),
        )
    )
    (note,) = [a for a in graph.annotations_for("blocks.1.attn.hook_result[4,2]") if a.id == "head-1-2-induction"]
    params = f"{tiny_graph.model.total_parameters:,}"
    assert note.caption == f"5 x 32; {params} params in {tiny_graph.model.name}"
    assert "," in params


def test_selector_matching_nothing_in_the_graph_is_reported(tmp_path, tiny_graph):
    path = write(tmp_path, INDUCTION.replace("layer: 1", "layer: 7") + "      - kind: W_E\n        layer: 0\n")
    graph = fresh(tiny_graph)
    with pytest.raises(DataValidationError) as info:
        graph.annotate(path)
    assert info.value.problems == [
        f"{path}:11:9: annotations[0].targets[0].layer: layer 7 is out of range: this graph has layers 0..1",
        f"{path}:13:9: annotations[0].targets[1]: selects no node of this graph (kind W_E, layer 0)",
    ]
    assert graph.header.user_data == [], "nothing is added when there is a problem"


def test_reusing_a_builtin_id_needs_override(tmp_path, tiny_graph):
    entry = """\
glossary:
  - id: residual-stream
    term: Residual stream
    summary: Our lab's one-line version.
    body: Our lab's longer version.
"""
    with pytest.raises(DataValidationError, match="already defined at data/glossary/residual-stream.yaml"):
        fresh(tiny_graph).annotate(write(tmp_path, entry))
    graph = fresh(tiny_graph).annotate(write(tmp_path, entry.replace("    term:", "    override: true\n    term:")))
    assert graph.glossary["residual-stream"].summary == "Our lab's one-line version."
    assert len(graph.glossary) == len(builtin_glossary())
    assert list(graph.glossary) == list(builtin_glossary()), "an override keeps the entry's place"
    assert builtin_glossary()["residual-stream"].summary != "Our lab's one-line version."


def test_a_later_file_reusing_a_user_id_needs_override(tmp_path, tiny_graph):
    graph = fresh(tiny_graph).annotate(write(tmp_path, INDUCTION))
    with pytest.raises(DataValidationError, match=f"already defined at {tmp_path / 'mine.yaml'}:2:5"):
        graph.annotate(write(tmp_path, INDUCTION, "again.yaml"))
    graph.annotate(
        write(
            tmp_path,
            INDUCTION.replace("  - id: head-1-2-induction", "  - id: head-1-2-induction\n    override: true"),
            "again.yaml",
        )
    )
    assert len(graph.header.user_data) == 2


def test_saved_graph_keeps_user_annotations(tmp_path, tiny_graph):
    graph = fresh(tiny_graph).annotate(write(tmp_path, INDUCTION))
    graph.save(tmp_path / "run.gg")
    loaded = gpt2graph.load(tmp_path / "run.gg")
    assert loaded.header.user_data == graph.header.user_data
    assert "head-1-2-induction" in [a.id for a in loaded.annotations_for("blocks.1.attn.hook_pattern[2,4]")]
    assert load_glossary(loaded.header.user_data).annotations[-1].id == "head-1-2-induction"


def test_build_with_annotations_on_the_command_line(tmp_path, tiny_checkpoint, capsys):
    path = write(tmp_path, INDUCTION)
    assert (
        main(
            [
                "build",
                PROMPT,
                "--model",
                str(tiny_checkpoint),
                "--annotations",
                str(path),
                "-o",
                str(tmp_path / "run.gg"),
            ]
        )
        == 0
    )
    loaded = gpt2graph.load(tmp_path / "run.gg")
    (note,) = [a for a in loaded.annotations_for("blocks.1.attn.hook_pattern[2,4]") if a.id == "head-1-2-induction"]
    assert note.caption == "5 x 32"


def test_glossary_objects_can_be_built_in_code():
    entry = GlossaryEntry(id="my-term", term="My term", summary="One.", body="Two.")
    note = Annotation(id="my-note", title="T", body="{n_layer} layers", targets=[Selector(kind="q")])
    glossary = Glossary([entry], [note])
    assert glossary["my-term"] is entry and glossary.annotations == (note,)
    with pytest.raises(ValueError, match="unknown template field"):
        Annotation(id="bad", title="T", body="{n_layers}", targets=[Selector(kind="q")])


def test_data_directory_can_be_overridden(tmp_path, monkeypatch):
    write(tmp_path, "glossary:\n  - id: only-one\n    term: Only\n    summary: One.\n    body: Two.\n", "g.yaml")
    monkeypatch.setenv("GPT2GRAPH_DATA", str(tmp_path))
    assert list(builtin_glossary()) == ["only-one"]
