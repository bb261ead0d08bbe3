"""``gpt2graph serve``: the live instrument in the browser, a Bokeh server application.

It holds a model (unlike a renderer, which only reads a graph), so it is an *app* plugin, registered in the
``gpt2graph.apps`` entry-point group by this package's ``pyproject.toml`` and found by the core's registry.
Graphs are built with the core's public API (:func:`gpt2graph.build`, ``graph.with_decoding``,
``graph.analyze``) and drawn with this plugin's explorer.

    gpt2graph serve --model path/to/checkpoint --port 0 --no-browser
"""

from __future__ import annotations

from typing import Any

from .server import LiveServer, ServeConfig, ServerThread

__all__ = ["BokehApp", "LiveServer", "ServeConfig", "ServerThread"]


class BokehApp:
    """The ``bokeh`` app: prompt in, graph out, decoding live, a walkthrough of the forward pass."""

    name = "bokeh"
    description = "a live instrument in the browser (Bokeh server): type, run, decode, step through the forward pass"

    def serve(self, **options: Any) -> int:
        """Serve until stopped (options: the fields of :class:`ServeConfig`); the exit status."""
        return LiveServer(ServeConfig(**options)).run()
