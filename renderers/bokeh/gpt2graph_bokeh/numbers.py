"""How numbers read on the page: in significant digits, since a random-weight run's probabilities (1/50257
each) and effects (1e-5) would all print as 0 with a fixed number of decimals.

Example::

    percent(0.125), percent(3.3e-5), signed(-1.2e-5)   # '12.5%', '0.0033%', '-1.2e-05'
"""

from __future__ import annotations

__all__ = ["percent", "signed"]


def percent(p: float) -> str:
    """A probability as a percentage: one decimal from 1% up, two significant digits below."""
    return f"{p:.1%}" if p >= 0.01 else f"{p * 100:.2g}%"


def signed(x: float) -> str:
    """A signed quantity (a logit effect) in four significant digits, with its sign."""
    return f"{x:+.4g}"
