"""Bokeh's own server, started programmatically: the page of :mod:`.page` at ``/``, prepared files at
``/download/<token>``, nothing else.

The server is assembled from Bokeh's parts (:class:`~bokeh.server.tornado.BokehTornado`, Tornado's HTTP server,
:class:`~bokeh.server.server.BaseServer`) so that the socket is bound first and the websocket origins can name
the port actually bound (``--port 0`` picks a free one). It listens on 127.0.0.1 unless told otherwise;
websocket connections are accepted only from pages served under the names of the address it listens on.

Example::

    server = LiveServer(ServeConfig(models=["path/to/checkpoint"], port=0))
    server.run()                       # prints the URL, opens a browser, returns 0 on Ctrl-C

    with ServerThread(config) as server:   # in a background thread (tests, benchmarks)
        server.url
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import sys
import threading
import webbrowser
from dataclasses import dataclass, field
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.server.server import BaseServer
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import bind_sockets
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from gpt2graph import Gpt2GraphError

from .downloads import ROUTE, DownloadHandler, Downloads
from .models import ModelPool
from .page import Page, Shared
from .store import GraphStore

__all__ = ["LiveServer", "ServeConfig", "ServerThread", "origins"]


class ServeError(Gpt2GraphError):
    """The server cannot start (the port is taken, the address is not this machine's)."""


@dataclass
class ServeConfig:
    """How ``gpt2graph serve`` was asked to run."""

    models: list[str | None] = field(default_factory=lambda: [None])
    random_weights: bool = False
    seed: int = 0
    revision: str | None = None
    annotations: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 5006
    open_browser: bool = True
    max_graphs: int = 16
    max_graphs_per_session: int = 4
    max_tokens: int = 128
    #: how soon a closed tab's session (and its graphs) is dropped: unused for this long, checked this often
    session_lifetime_ms: int = 4000
    session_check_ms: int = 1000


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def origins(host: str, port: int) -> list[str]:
    """``host:port`` names a page of this server may be served under: the address it listens on; for the
    loopback address also ``localhost``; for every address (0.0.0.0) the machine's own names."""
    names = {host}
    if _loopback(host):
        names |= {"localhost", "127.0.0.1", "::1"}
    if _wildcard(host):
        names = {"localhost", "127.0.0.1", socket.gethostname(), socket.getfqdn()}
    return sorted(f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names if n)


class LiveServer:
    """One Bokeh server with the live page; :meth:`start` binds it on the calling thread's loop."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.shared = Shared(
            pool=ModelPool(config.models, config.random_weights, config.seed, config.revision),
            store=GraphStore(config.max_graphs, config.max_graphs_per_session),
            downloads=Downloads(),
            annotations=list(config.annotations),
            max_tokens=config.max_tokens,
        )
        self.url = ""
        self.port = 0
        self._server: BaseServer | None = None

    def start(self) -> str:
        """Bind, start serving on the current thread's IOLoop, begin loading the first model; the URL."""
        c = self.config
        try:
            sockets, self.port = bind_sockets(c.host, c.port)
        except OSError as exc:
            self.stop()
            raise ServeError(
                f"cannot listen on {c.host}:{c.port}: {exc.strerror or exc} (choose another --port)"
            ) from None
        app = Application(FunctionHandler(lambda doc: Page(doc, self.shared)))
        tornado_app = BokehTornado(
            {"/": app},
            extra_websocket_origins=origins(c.host, self.port),
            extra_patterns=[(ROUTE, DownloadHandler, {"downloads": self.shared.downloads})],
            unused_session_lifetime_milliseconds=c.session_lifetime_ms,
            check_unused_sessions_milliseconds=c.session_check_ms,
            use_index=False,
        )
        http = HTTPServer(tornado_app)
        http.add_sockets(sockets)
        self._server = BaseServer(IOLoop.current(), tornado_app, http)
        self._server.start()
        self.shared.pool.request(0)  # the first page wants it soon
        shown = "localhost" if _wildcard(c.host) else f"[{c.host}]" if ":" in c.host else c.host
        self.url = f"http://{shown}:{self.port}/"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(wait=False)
            self._server = None
        self.shared.downloads.close()

    def run(self) -> int:
        """Serve until Ctrl-C (or SIGTERM): print the URL, open a browser unless told not to; exit status 0."""
        c = self.config
        loop = IOLoop.current()
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop the loop between two callbacks: no traceback
            # (where signal handlers cannot be added to the loop, Ctrl-C raises KeyboardInterrupt instead)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.asyncio_loop.add_signal_handler(sig, loop.stop)
        try:
            url = self.start()
            if not _loopback(c.host):
                print(
                    f"warning: listening on {c.host}:{self.port}, reachable from the network: anyone who can reach "
                    "this machine can use this server and its models (it has no login)",
                    file=sys.stderr,
                    flush=True,
                )
            print(f"gpt2graph serve: {url}  (Ctrl-C to stop)", flush=True)
            if c.open_browser:
                threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
            loop.start()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        print("gpt2graph serve: stopped", flush=True)
        return 0


class ServerThread:
    """A :class:`LiveServer` on a loop of its own in a background thread; ``with`` starts and stops it."""

    def __init__(self, config: ServeConfig):
        self.server = LiveServer(config)
        self._loop: IOLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="g2g-server")
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def shared(self) -> Shared:
        return self.server.shared

    def _run(self) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        self._loop = IOLoop.current()
        try:
            self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.start()
        self.server.stop()
        self._loop.close(all_fds=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Any) -> None:
        """Run ``fn()`` on the server's loop (where documents may be touched)."""
        self._loop.add_callback(fn)

    def __exit__(self, *_: Any) -> None:
        if self._loop is not None:
            self._loop.add_callback(self._loop.stop)
        self._thread.join(timeout=30)
