"""Text measurement and wrapping with the font the SVG names, so computed boxes match what a browser draws.

Widths come from Pillow's FreeType rendering of DejaVu Sans, which matches Chromium's layout of the same font
within 0.1%; fixed per-character estimates are off by 5-30%, enough to make wrapped text overflow its box.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

__all__ = ["FONT_FAMILY", "font_file", "width", "line_height", "ascent", "wrap", "fit"]

#: what the SVG asks for; DejaVu Sans first because that is what we measure with
FONT_FAMILY = "'DejaVu Sans', Verdana, sans-serif"

_SYSTEM_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
    "/opt/homebrew/share/fonts",
)
_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}


@lru_cache(maxsize=2)
def font_file(bold: bool = False) -> Path | None:
    """DejaVu Sans from the system (Debian: fonts-dejavu-core), fontconfig, or matplotlib's bundled copy."""
    name = _FILES[bold]
    for d in _SYSTEM_DIRS:
        if (Path(d) / name).is_file():
            return Path(d) / name
    if shutil.which("fc-match"):
        style = ":style=Bold" if bold else ""
        out = subprocess.run(
            ["fc-match", "-f", "%{file}", f"DejaVu Sans{style}"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and Path(out.stdout).name == name:
            return Path(out.stdout)
    try:
        import matplotlib  # optional: ships DejaVu Sans in mpl-data/fonts/ttf

        bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        return bundled if bundled.is_file() else None
    except ImportError:
        return None


@lru_cache(maxsize=64)
def _font(size: float, bold: bool) -> ImageFont.FreeTypeFont:
    path = font_file(bold)
    if path is None:
        warnings.warn(
            "DejaVu Sans not found (install fonts-dejavu-core): text boxes are measured with Pillow's "
            "default font and may not match the browser's rendering",
            stacklevel=3,
        )
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(path), size)


@lru_cache(maxsize=65536)
def width(text: str, size: float, bold: bool = False) -> float:
    """Advance width of ``text`` in pixels at ``size`` px."""
    return float(_font(size, bold).getlength(text))


def line_height(size: float) -> float:
    return round(size * 1.3, 2)


def ascent(size: float) -> float:
    """Baseline offset from the top of a line box (DejaVu Sans: ascender 0.93 em, line box 1.3 em)."""
    return round(size * 1.08, 2)


def wrap(text: str, max_width: float, size: float, bold: bool = False) -> list[str]:
    """Greedy word wrap to ``max_width``; a word longer than a line is broken between characters."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if width(candidate, size, bold) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while width(word, size, bold) > max_width:
            cut = max(1, _fitting_prefix(word, max_width, size, bold))
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current or not lines:
        lines.append(current)
    return lines


def _fitting_prefix(text: str, max_width: float, size: float, bold: bool) -> int:
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if width(text[:mid], size, bold) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit(text: str, max_width: float, size: float, bold: bool = False) -> str:
    """``text`` shortened with an ellipsis so that it fits on one line of ``max_width``."""
    if width(text, size, bold) <= max_width:
        return text
    return text[: _fitting_prefix(text, max_width - width("…", size, bold), size, bold)] + "…"
