"""Renderer plugins: discovered through the ``gpt2graph.renderers`` entry-point group.

A renderer is any object (or class with a no-argument constructor) with this shape::

    class MyRenderer:
        name = "dot"                                    # what users type: -r dot
        description = "Graphviz source of the graph"    # one line for `gpt2graph renderers`
        suffixes = (".dot",)                            # output file suffixes it writes
        options = {"layers": Option(list[int], None, "layers to include")}
        def render(self, graph, path, **options) -> Path: ...

A renderer that can also draw corpus statistics (``gpt2graph corpus``) adds ``render_corpus(stats, path) ->
Path``; ``render`` sends a :class:`~gpt2graph.corpus.CorpusStats` there, and says which renderers can when
the one named cannot.

and registers itself in its own ``pyproject.toml``::

    [project.entry-points."gpt2graph.renderers"]
    dot = "my_package:MyRenderer"

The core never imports a renderer: built-in renderers (``renderers/svg``, ``renderers/bokeh``) register the
same way a third party does. Entry points are read lazily, once; a name claimed by two plugins is an error
naming both; options are declared with types, so the CLI can list and validate them before rendering.

A renderer consumes a graph, never a live model. What holds a model and builds graphs as someone works (the
live instrument of ``gpt2graph serve``) is an *app*, found the same way in the ``gpt2graph.apps`` group::

    class MyApp:
        name = "live"
        description = "a live instrument in the browser"
        def serve(self, *, models, random_weights, seed, revision, annotations, host, port, open_browser,
                  max_graphs, max_graphs_per_session, max_tokens) -> int: ...   # blocks until stopped

    [project.entry-points."gpt2graph.apps"]
    live = "my_package:MyApp"
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
import warnings
import webbrowser
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, get_args, get_origin, runtime_checkable

from .errors import RendererError

__all__ = [
    "ENTRY_POINT_GROUP",
    "APP_ENTRY_POINT_GROUP",
    "Option",
    "Renderer",
    "App",
    "RendererInfo",
    "Registry",
    "registry",
    "apps",
    "render",
    "render_corpus",
    "draws_corpus",
    "serve",
    "show",
    "in_notebook",
    "check_options",
    "parse_cli_options",
]

ENTRY_POINT_GROUP = "gpt2graph.renderers"
APP_ENTRY_POINT_GROUP = "gpt2graph.apps"
#: what a plugin of each kind must define
RENDERER_PROTOCOL = ("name", "description", "suffixes", "options", "render")
APP_PROTOCOL = ("name", "description", "serve")


@dataclass(frozen=True)
class Option:
    """A renderer option: its type (bool, int, float, str, list[int], list[str]), default and help text.
    ``choices`` restricts str values; ``minimum`` numbers (each item of a list). The help says what the option
    does, never its default: ``gpt2graph renderers`` shows the default once, as ``default_text`` when given
    (what an unset default means, e.g. "derived from the prompt"), else as the value."""

    type: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    default_text: str | None = None

    @property
    def type_name(self) -> str:
        return str(getattr(self.type, "__name__", self.type)) if get_origin(self.type) is None else str(self.type)

    def describe(self) -> dict[str, Any]:
        """The option as plain data, for listings (``gpt2graph renderers``, ``--json``)."""
        return {
            "type": self.type_name,
            "default": self.default,
            "default_text": self.default_text or repr(self.default),
            "help": self.help,
            "choices": list(self.choices) if self.choices else None,
            "minimum": self.minimum,
        }

    def check(self, name: str, value: Any, renderer: str) -> Any:
        """Validate (and for CLI strings, convert) one value; raise RendererError saying what was expected."""
        if isinstance(value, str) and self.type is not str:
            value = self._from_string(name, value, renderer)
        ok = _isinstance(value, self.type) or (
            value is None and (self.default is None or get_origin(self.type) is list)
        )
        if not ok:
            raise RendererError(
                f"renderer {renderer!r}: option {name!r} expects {self.type_name}, got {type(value).__name__} {value!r}"
            )
        if self.choices and value is not None and value not in self.choices:
            raise RendererError(
                f"renderer {renderer!r}: option {name!r} must be one of {', '.join(self.choices)}; got {value!r}"
            )
        numbers = value if isinstance(value, (list, tuple)) else [value]
        low = [v for v in numbers if isinstance(v, (int, float)) and self.minimum is not None and v < self.minimum]
        if low:
            raise RendererError(
                f"renderer {renderer!r}: option {name!r} must be at least {self.minimum:g}"
                f"{' (every item)' if numbers is value else ''}; got {value!r}"
            )
        return value

    def _from_string(self, name: str, text: str, renderer: str) -> Any:
        try:
            if self.type is bool:
                lowered = text.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if get_origin(self.type) is list:
                (item,) = get_args(self.type)
                lowered = text.strip().lower()
                if lowered == "all":
                    return None  # for a list option, None means every value
                if lowered == "":
                    return None if self.default is None else []
                return [item(part) for part in text.split(",")]
            return self.type(text)
        except ValueError:
            raise RendererError(
                f"renderer {renderer!r}: option {name!r} expects {self.type_name}, got {text!r}"
            ) from None


def _isinstance(value: Any, tp: Any) -> bool:
    if get_origin(tp) is list:
        (item,) = get_args(tp)
        return isinstance(value, (list, tuple)) and all(_isinstance(v, item) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


@runtime_checkable
class Renderer(Protocol):
    name: str
    description: str
    suffixes: tuple[str, ...]
    options: dict[str, Option]

    def render(self, graph: Any, path: Path, **options: Any) -> Path: ...

    # Optional: ``show(graph, **options)`` displays inline in a Jupyter notebook (see ``Graph.show``).
    # Optional: ``render_corpus(stats, path) -> Path`` draws corpus statistics (``gpt2graph corpus``, a .ggc):
    # a heat map of mean head-role scores, lens accuracy by layer and loss by position; see ``render_corpus``.


@runtime_checkable
class App(Protocol):
    """A live app: holds a model, builds graphs as its user works, and serves until stopped (exit status)."""

    name: str
    description: str

    def serve(self, **options: Any) -> int: ...


@dataclass
class RendererInfo:
    """One installed plugin (a renderer, as listed by ``gpt2graph renderers``, or an app)."""

    name: str
    entry_point: EntryPoint
    distribution: str
    version: str
    noun: str = "renderer"
    protocol: tuple[str, ...] = RENDERER_PROTOCOL
    _loaded: Any = field(default=None, repr=False)

    def load(self) -> Any:
        if self._loaded is None:
            try:
                obj = self.entry_point.load()
            except Exception as exc:
                raise RendererError(
                    f"{self.noun} {self.name!r} ({self.entry_point.value}, from {self.distribution}) failed to "
                    f"load: {exc}"
                ) from exc
            obj = obj() if inspect.isclass(obj) else obj
            missing = [a for a in self.protocol if not hasattr(obj, a)]
            if missing:
                raise RendererError(
                    f"{self.noun} {self.name!r} from {self.distribution} does not implement the "
                    f"{self.noun} protocol: missing {', '.join(missing)}"
                )
            self._loaded = obj
        return self._loaded


class Registry:
    """The single source of truth for installed plugins of one group (renderers by default, or apps);
    entry points are read on first use."""

    def __init__(
        self, group: str = ENTRY_POINT_GROUP, noun: str = "renderer", protocol: tuple[str, ...] = RENDERER_PROTOCOL
    ):
        self.group = group
        self.noun = noun
        self.protocol = tuple(protocol)
        self._infos: dict[str, RendererInfo] | None = None

    def _discover(self) -> dict[str, RendererInfo]:
        if self._infos is None:
            infos: dict[str, RendererInfo] = {}
            for ep in entry_points(group=self.group):
                dist = ep.dist.metadata["Name"] if ep.dist else "unknown distribution"
                version = ep.dist.version if ep.dist else "?"
                if ep.name in infos and infos[ep.name].entry_point.value != ep.value:
                    other = infos[ep.name]
                    raise RendererError(
                        f"two plugins claim the {self.noun} name {ep.name!r}: {other.entry_point.value} "
                        f"(from {other.distribution}) and {ep.value} (from {dist}); uninstall one"
                    )
                infos[ep.name] = RendererInfo(ep.name, ep, dist, version, self.noun, self.protocol)
            self._infos = dict(sorted(infos.items()))
        return self._infos

    def refresh(self) -> None:
        """Forget what was discovered (after installing a plugin in the same process)."""
        self._infos = None

    def names(self) -> list[str]:
        return list(self._discover())

    def info(self, name: str) -> RendererInfo:
        infos = self._discover()
        if name not in infos:
            installed = ", ".join(infos) or "none (install renderers/svg or renderers/bokeh)"
            raise RendererError(f"unknown {self.noun} {name!r}; installed {self.noun}s: {installed}")
        return infos[name]

    def resolve(self, name: str) -> Any:
        return self.info(name).load()

    def check_options(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """Validated options with defaults filled in; an unknown option lists the valid ones."""
        return check_options(self.resolve(name).options, options, name)


def check_options(declared: dict[str, Option], options: dict[str, Any], renderer: str) -> dict[str, Any]:
    """``options`` checked against a renderer's ``declared`` ones, with the defaults filled in (for a plugin's
    own entry points too, so that every way in applies the same rules)."""
    unknown = sorted(set(options) - set(declared))
    if unknown:
        valid = ", ".join(f"{k} ({o.type_name})" for k, o in declared.items()) or "none"
        raise RendererError(
            f"renderer {renderer!r} has no option {', '.join(map(repr, unknown))}; valid options: {valid}"
        )
    checked = {k: o.default for k, o in declared.items()}
    checked.update({k: declared[k].check(k, v, renderer) for k, v in options.items()})
    return checked


registry = Registry()
#: live apps (``gpt2graph serve``): plugins that hold a model, unlike renderers
apps = Registry(APP_ENTRY_POINT_GROUP, "app", APP_PROTOCOL)


def render(graph: Any, name: str, path: str | os.PathLike[str], **options: Any) -> Path:
    """Render ``graph`` with the renderer ``name`` to ``path`` after validating the options. Corpus statistics
    (:class:`~gpt2graph.corpus.CorpusStats`) go to the renderer's ``render_corpus``, which takes no options."""
    from . import progress
    from .corpus import CorpusStats

    if isinstance(graph, CorpusStats):
        return render_corpus(graph, name, path, **options)
    checked = registry.check_options(name, options)
    with progress.task(f"render {name}"):
        written: Path = registry.resolve(name).render(graph, Path(path), **checked)
    return written


def draws_corpus(renderer: Renderer) -> bool:
    """Whether a renderer draws corpus statistics too (it has the optional ``render_corpus``)."""
    return callable(getattr(renderer, "render_corpus", None))


def render_corpus(stats: Any, name: str, path: str | os.PathLike[str], **options: Any) -> Path:
    """Draw corpus statistics with renderer ``name``: a renderer that can has ``render_corpus(stats, path)``."""
    draw = getattr(registry.resolve(name), "render_corpus", None)
    if not callable(draw):
        able = [n for n in registry.names() if draws_corpus(registry.resolve(n))]
        raise RendererError(
            f"renderer {name!r} cannot draw corpus statistics (it has no render_corpus); renderers that can: "
            f"{', '.join(able) or 'none installed'}"
        )
    if options:
        raise RendererError(f"renderer {name!r} takes no options for corpus statistics; got {', '.join(options)}")
    written: Path = draw(stats, Path(path))
    return written


def show(graph: Any, name: str, **options: Any) -> Path | None:
    """Display ``graph`` with renderer ``name``, as ``bokeh.io.show`` does: inline in a Jupyter notebook (with the
    renderer's ``show``), elsewhere written to a temporary file, opened in the web browser and returned."""
    checked = registry.check_options(name, options)
    renderer = registry.resolve(name)
    if in_notebook():
        display = getattr(renderer, "show", None)
        if not callable(display):
            raise RendererError(
                f"renderer {name!r} cannot display inline (it has no show()); write a file with "
                f"graph.render({name!r}, path) instead"
            )
        display(graph, **checked)
        return None
    path = Path(tempfile.mkdtemp(prefix="gpt2graph-show-")) / f"{name}{renderer.suffixes[0]}"
    renderer.render(graph, path, **checked)
    if not webbrowser.open(path.as_uri()):
        warnings.warn(f"no web browser could be opened: the {name} rendering is at {path}", stacklevel=3)
    return path


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel; a terminal IPython has none)."""
    ipython = sys.modules.get("IPython")  # never imported here: a notebook has imported it already
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def serve(app: str | None = None, **options: Any) -> int:
    """Run the app ``app`` (None: the one installed app) until it is stopped; its exit status."""
    names = apps.names()
    if app is None:
        if not names:
            raise RendererError(
                "no installed plugin can serve: `gpt2graph serve` needs an app plugin in the "
                f"{APP_ENTRY_POINT_GROUP!r} group, such as the Bokeh one (pip install -e renderers/bokeh)"
            )
        if len(names) > 1:
            raise RendererError(f"several apps can serve ({', '.join(names)}): choose one with --app")
        app = names[0]
    code: int = apps.resolve(app).serve(**options)
    return code


def parse_cli_options(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` from ``--option`` flags into a dict of strings (converted later by each Option)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RendererError(f"--option expects key=value, got {pair!r}")
        out[key.strip().replace("-", "_")] = value
    return out
