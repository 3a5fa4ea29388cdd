"""Several independent problems stacked block-diagonally, so that one tensor program trains them all.

Model selection fits the same model many times: every fold times every grid
point. Each fit on a small dataset is hundreds of short kernels that leave a
CPU's cores (and a GPU entirely) idle. Stacked, fit ``b`` owns the users
``[users[b], users[b + 1])`` and the items ``[items[b], items[b + 1])`` of
one large rating matrix whose ratings all lie in those diagonal blocks: a row
of fit ``b`` only ever meets columns of fit ``b``, so every sparse product, gathered
Gram matrix and optimizer step of the large problem computes each fit's own
numbers, and one epoch is one set of products for all of them.

What differs between the fits (regularisation, learning rates, epochs, the
global mean) becomes a per-row tensor; what they report (losses, divergence)
is summed per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._common import sum64


@dataclass(frozen=True)
class Stack:
    """Where each of the stacked fits lies: its contiguous ranges of user and item rows.

    Attributes
    ----------
    users, items : tuple of int
        ``n_fits + 1`` offsets: fit ``b`` owns user rows
        ``users[b]:users[b + 1]`` and item rows ``items[b]:items[b + 1]``.
    """

    users: tuple
    items: tuple

    @classmethod
    def single(cls, n_users: int, n_items: int) -> "Stack":
        """One fit over the whole matrix."""
        return cls((0, n_users), (0, n_items))

    @classmethod
    def of_sizes(cls, sizes) -> "Stack":
        """Fits of the given ``(n_users, n_items)``, stacked in order."""
        users, items = [0], [0]
        for n_users, n_items in sizes:
            users.append(users[-1] + n_users)
            items.append(items[-1] + n_items)
        return cls(tuple(users), tuple(items))

    @property
    def n_fits(self) -> int:
        """Number of stacked fits."""
        return len(self.users) - 1

    @property
    def shape(self) -> tuple:
        """``(n_users, n_items)`` of the stacked matrix."""
        return self.users[-1], self.items[-1]

    def lengths(self, side: str) -> list:
        """Rows of each fit on ``side`` (``"users"`` or ``"items"``)."""
        offsets = getattr(self, side)
        return [b - a for a, b in zip(offsets[:-1], offsets[1:])]

    def rating_lengths(self, crow: torch.Tensor, side: str = "users") -> list:
        """Ratings of each fit, given ``side``'s CSR row pointers (a fit's ratings are contiguous)."""
        offsets = torch.tensor(getattr(self, side), device=crow.device)
        ends = crow.index_select(0, offsets).tolist()
        return [b - a for a, b in zip(ends[:-1], ends[1:])]

    def check(self, shape) -> None:
        """Raise ``ValueError`` unless the stack covers an ``(n_users, n_items)`` matrix of ``shape``."""
        if self.shape != tuple(shape):
            raise ValueError(f"The stack covers {self.shape} but the ratings are {tuple(shape)}.")

    def select(self, tensor: torch.Tensor, side: str, fit: int) -> torch.Tensor:
        """Fit ``fit``'s rows of a ``side``-indexed tensor (a view)."""
        offsets = getattr(self, side)
        return tensor[offsets[fit]:offsets[fit + 1]]


def per_row(values, lengths: list, like: torch.Tensor):
    """One value per fit, spread over each fit's ``lengths`` rows: a float when all fits share it.

    A float keeps a lone fit's arithmetic what it always was; otherwise a
    ``(sum(lengths),)`` tensor in ``like``'s dtype and device.
    """
    values = [float(v) for v in values]
    if all(v == values[0] for v in values):
        return values[0]
    counts = torch.tensor(lengths, device=like.device)
    return torch.repeat_interleave(torch.tensor(values, dtype=like.dtype, device=like.device), counts)


def centred(values: torch.Tensor, lengths: list, biased: bool, inplace: bool = False):
    """Each fit's mean rating (0 without biases) and the ratings less their own fit's mean.

    ``values`` hold the fits' ratings one fit after another, ``lengths`` of
    each; with ``inplace`` they are centred where they are (the same values
    as a copy's, without a new rating-sized buffer).
    """
    means = [sum64(part) / part.numel() if biased and part.numel() else 0.0 for part in values.split(lengths)]
    shift = per_row(means, lengths, values)
    return means, values.sub_(shift) if inplace else values - shift


def per_fit(values: torch.Tensor, lengths: list, square: bool = False) -> torch.Tensor:
    """Sums of ``values`` (of their squares, with ``square``) over each fit's contiguous segment of ``lengths``.

    One reduction per fit, in the values' own dtype, so that a fit's sum is
    the one a lone fit computes, however many fits are stacked; returned in
    float64. No copy of ``values`` is made: at ML-10M's size a float64 copy
    of the residuals cost 0.1 s an epoch.
    """
    parts = [values] if len(lengths) == 1 else values.split(lengths)
    return torch.stack([part.dot(part) if square else part.sum() for part in parts]).double()


def fit_list(value, n_fits: int, name: str) -> list:
    """``value`` as one entry per fit: a list of that length as given, anything else repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_fits:
            raise ValueError(f"{name} has {len(value)} entries for {n_fits} stacked fits.")
        return list(value)
    return [value] * n_fits


def keep_rows(kept: list, live, sides: list, stack: Stack, fits: list, first: bool = False):
    """Copy the listed fits' rows of each ``live`` tensor (indexed by users or items, per ``sides``) into ``kept``.

    How trainers snapshot each fit's last sound state: a fit that blows up
    later, or whose epochs are over while others go on, keeps these rows.
    With ``first`` (``kept`` not yet written: allocated empty, so that its
    pages are touched once, by this copy, not also by zeroing), the other
    fits' rows are zeroed: the mean model.
    """
    with torch.no_grad():
        if len(fits) == stack.n_fits:
            for snapshot, tensor in zip(kept, live):
                snapshot.copy_(tensor)
            return
        for b in range(stack.n_fits) if first else fits:
            for snapshot, tensor, side in zip(kept, live, sides):
                rows = stack.select(snapshot, side, b)
                if b in fits:
                    rows.copy_(stack.select(tensor, side, b))
                else:
                    rows.zero_()
