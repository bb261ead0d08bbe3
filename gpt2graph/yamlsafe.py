"""Safe, bounded YAML that remembers where everything was written.

Data files are user input: the loader accepts plain data only (strings, numbers, booleans, lists, mappings;
no Python object tags, no merge keys), refuses documents whose aliases would expand into a huge structure
before expanding them, and records the line and column of every mapping key and sequence item so that a
validation error can point at the exact place in the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MarkedLoader", "KeyPath", "format_path", "MAX_NODES", "MAX_DEPTH"]

MAX_NODES = 100_000  # YAML nodes after alias expansion; the largest built-in file has about 600
MAX_DEPTH = 64  # nesting of mappings and sequences; the format needs 6

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STD + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
KeyPath = tuple[str | int, ...]


class _Refused(Exception):
    """A document the loader will not expand (unsafe tag, alias bomb, recursion, excessive nesting)."""


# libyaml's parser when PyYAML was built with it (ten times faster, and it limits nesting itself)
if TYPE_CHECKING:
    _SafeBase = yaml.SafeLoader
else:
    _SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class MarkedLoader(_SafeBase):
    """Composes one YAML document and turns it into plain data itself, so that it can record where every
    mapping key and sequence item was written (``key_marks``: path -> (line, column), 1-based) and refuse
    anything but plain data. Before building, it measures what the document would expand to, counting each
    alias as the structure it repeats, so a nest of aliases is refused without being expanded."""

    def __init__(self, text: str, source: str):
        super().__init__(text)
        self.source = source
        self.key_marks: dict[KeyPath, tuple[int, int]] = {}
        self.problems: list[str] = []

    def load_marked(self) -> tuple[Any, bool]:
        """(data, ok): ``ok`` is False when the document could not be read at all."""
        try:
            root = self.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.problems.append(f"{self._at(mark)}: YAML syntax error: {exc.problem or exc.context}")
            return None, False
        except yaml.reader.ReaderError as exc:
            self.problems.append(
                f"{self.source}: not readable as YAML: {exc.reason} (character {exc.character!r} "
                f"at offset {exc.position})"
            )
            return None, False
        except RecursionError:  # the pure-Python composer recurses once per level
            self.problems.append(f"{self.source}: refused: nested more than {MAX_DEPTH} levels deep")
            return None, False
        finally:
            self.dispose()
        if root is None:
            return {}, True
        self.key_marks[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
        try:
            if self._expanded_size(root, {}, set()) > MAX_NODES:
                raise _Refused(
                    f"{self._at(root.start_mark)}: refused: the document expands to more than "
                    f"{MAX_NODES:,} YAML nodes (aliases repeating large structures?)"
                )
            return self._build(root, ()), True
        except _Refused as exc:
            self.problems.append(str(exc))
            return None, False

    def _at(self, mark: yaml.Mark | None) -> str:
        return f"{self.source}:{mark.line + 1}:{mark.column + 1}" if mark else self.source

    def _expanded_size(self, node: Node, sizes: dict[int, int], open_: set[int]) -> int:
        """Number of nodes ``node`` stands for once aliases are expanded (memoised per node, so this costs one
        visit per node as written); refuse recursive aliases and deep nesting on the way."""
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise _Refused(f"{self._at(node.start_mark)}: refused: recursive alias")
        if len(open_) >= MAX_DEPTH:
            raise _Refused(f"{self._at(node.start_mark)}: refused: nested more than {MAX_DEPTH} levels deep")
        open_.add(key)
        if isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, SequenceNode) else []
        sizes[key] = 1 + sum(self._expanded_size(child, sizes, open_) for child in children)
        open_.discard(key)
        return sizes[key]

    def _build(self, node: Node, path: KeyPath) -> Any:
        if isinstance(node, MappingNode):
            self._check_tag(node, _STD + "map")
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            self._check_tag(node, _STD + "seq")
            items = []
            for i, item in enumerate(node.value):
                self.key_marks[(*path, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(self._build(item, (*path, i)))
            return items
        return self._scalar(node)

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            where = self._at(key_node.start_mark)
            if key_node.tag == _STD + "merge":
                self.problems.append(f"{where}: merge keys (<<) are not supported: write the fields out")
                continue
            if not isinstance(key_node, ScalarNode):
                self.problems.append(f"{where}: a mapping key must be a plain name, not a list or mapping")
                continue
            key = self._scalar(key_node)
            if key in out:
                first = self.key_marks[(*path, key)]
                self.problems.append(
                    f"{where}: {format_path((*path, key))}: duplicate key (first at line "
                    f"{first[0]}); only the first is used"
                )
                continue
            self.key_marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self._build(value_node, (*path, key))
        return out

    def _scalar(self, node: Node) -> Any:
        self._check_tag(node, *_SCALAR_TAGS)
        try:
            return self.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            raise _Refused(
                f"{self._at(node.start_mark)}: cannot read this {node.tag.removeprefix(_STD)} value: {exc}"
            ) from None

    def _check_tag(self, node: Node, *allowed: str) -> None:
        if node.tag not in allowed:
            tag = node.tag.replace(_STD, "!!")
            raise _Refused(
                f"{self._at(node.start_mark)}: refused: tag {tag} is not allowed (data files hold only "
                f"strings, numbers, booleans, lists and mappings)"
            )


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
