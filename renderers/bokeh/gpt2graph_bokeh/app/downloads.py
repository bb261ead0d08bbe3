"""Files a page asked for (the SVG poster, the saved graph), prepared by the server and fetched by the
browser from ``/download/<token>``: one route added to Bokeh's own Tornado application.

A token is 32 random bytes, made for one file of one session; the file goes when the session closes. The
response is an attachment, never shown inline, and sandboxed, so an SVG cannot run in the server's origin.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from tornado.web import HTTPError, RequestHandler

__all__ = ["ROUTE", "DownloadHandler", "Downloads"]

ROUTE = r"/download/([A-Za-z0-9_-]{20,})"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _File:
    session: str
    path: Path
    name: str
    media_type: str


class Downloads:
    """Prepared files by token, in a directory of their own (removed with :meth:`close`)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gpt2graph-serve-"))
        self._files: dict[str, _File] = {}
        self._lock = threading.Lock()

    def folder(self, session: str) -> Path:
        """A fresh directory to prepare one file of ``session`` in."""
        return Path(tempfile.mkdtemp(prefix=f"{_safe(session)[:16]}-", dir=self.root))

    def add(self, session: str, path: Path, name: str, media_type: str) -> str:
        """Offer ``path`` to ``session`` under the file name ``name``; the URL (path only) to fetch it from."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._files[token] = _File(session, Path(path), name, media_type)
        return f"/download/{token}"

    def get(self, token: str) -> _File | None:
        with self._lock:
            return self._files.get(token)

    def drop_session(self, session: str) -> None:
        """Forget and delete every file of a closed session."""
        with self._lock:
            gone = [t for t, f in self._files.items() if f.session == session]
            files = [self._files.pop(t) for t in gone]
        for f in files:
            shutil.rmtree(f.path.parent, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._files.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)


class DownloadHandler(RequestHandler):
    """Sends one prepared file as an attachment (404 for a token that was never made or has gone)."""

    def initialize(self, downloads: Downloads) -> None:
        self.downloads = downloads

    async def get(self, token: str) -> None:
        found = self.downloads.get(token)
        if found is None or not found.path.is_file():
            raise HTTPError(404)
        self.set_header("Content-Type", found.media_type)
        self.set_header("Content-Disposition", f'attachment; filename="{_safe_name(found.name)}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Length", str(found.path.stat().st_size))
        with found.path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                self.write(chunk)
                await self.flush()


def _safe_name(name: str) -> str:
    """A file name that cannot break out of the header's quotes."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
