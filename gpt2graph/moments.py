"""Count, mean and variance of many samples, merged exactly in any order.

A :class:`Moments` holds the count, the mean and the sum of squared deviations (M2) of a set of samples, in
float64. Two of them combine into the moments of the union with the pairwise update of Chan, Golub and
LeVeque (https://doi.org/10.1080/00031305.1983.10483115, eq. 2.1), so statistics computed in pieces, on
several workers, or before and after an interruption equal those of one pass to rounding.

The count may have a shape of its own (the *groups*, e.g. one per token position) that leads the shape of
the mean: ``count`` (G...), ``mean`` and ``m2`` (G..., W...). Groups missing from one side count zero, so a
run of 7-token prompts merges with a run of 12-token prompts position by position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Moments"]


@dataclass(frozen=True)
class Moments:
    """Count (int64, shape G), mean and M2 (float64, shape G + W) of a set of samples."""

    count: Tensor
    mean: Tensor
    m2: Tensor

    @staticmethod
    def of(samples: Tensor, dim: int = 0) -> Moments:
        """The moments of ``samples`` along ``dim`` (two passes: no cancellation in M2)."""
        x = samples.double()
        mean = x.mean(dim)
        return Moments(torch.tensor(x.shape[dim], dtype=torch.int64), mean, (x - mean.unsqueeze(dim)).square().sum(dim))

    @staticmethod
    def each(samples: Tensor, groups: int = 1) -> Moments:
        """One sample per group: the leading ``groups`` dims of ``samples`` are the groups, each counted once."""
        x = samples.double()
        return Moments(torch.ones(x.shape[:groups], dtype=torch.int64), x, torch.zeros_like(x))

    @property
    def variance(self) -> Tensor:
        """Population variance M2 / count (NaN where nothing was counted)."""
        return self.m2 / self._counts().double()

    def _counts(self) -> Tensor:
        return self.count.reshape((*self.count.shape, *[1] * (self.mean.ndim - self.count.ndim)))

    def _padded(self, length: int) -> Moments:
        """The same moments with the leading group dim extended to ``length`` by empty groups."""
        extra = length - self.count.shape[0]
        if extra == 0:
            return self

        def pad(t: Tensor) -> Tensor:
            return torch.cat([t, t.new_zeros((extra, *t.shape[1:]))])

        return Moments(pad(self.count), pad(self.mean), pad(self.m2))

    def merge(self, other: Moments) -> Moments:
        """The moments of both sample sets together (Chan et al.'s pairwise update)."""
        a, b = self, other
        if a.count.ndim and a.count.shape != b.count.shape:
            length = max(a.count.shape[0], b.count.shape[0])
            a, b = a._padded(length), b._padded(length)
        na, nb = a._counts().double(), b._counts().double()
        n = na + nb
        share = torch.where(n > 0, nb / n.clamp(min=1), 0.0)  # empty groups stay empty (no 0/0)
        delta = b.mean - a.mean
        return Moments(a.count + b.count, a.mean + delta * share, a.m2 + b.m2 + delta.square() * na * share)
