"""Index of the observed entries of a rating matrix, for sparse products in both directions.

Rating matrices are mostly empty (ML-100K is 6% full), so products that only
involve observed entries run several times faster as CSR sparse-dense
products than as dense GEMMs over the whole matrix. :class:`Observed` keeps
the observed coordinates once, in user-major order, with the permutation to
item-major order, and wraps any per-rating vector as a CSR matrix for either
side without copying the index.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Observed:
    """Coordinates of the observed ratings, sorted by user then item.

    Attributes
    ----------
    users, items : torch.Tensor
        ``(nnz,)`` int64 row and column of each observed rating.
    shape : tuple of int
        ``(n_users, n_items)``.
    user_crow : torch.Tensor
        CSR row pointers of the user-major layout.
    item_order : torch.Tensor
        Permutation taking user-major vectors to item-major order.
    item_crow, item_cols : torch.Tensor
        CSR row pointers and column (user) indices of the item-major layout.
    """

    users: torch.Tensor
    items: torch.Tensor
    shape: tuple
    user_crow: torch.Tensor
    item_order: torch.Tensor
    item_crow: torch.Tensor
    item_cols: torch.Tensor

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "Observed":
        """Index the nonzero entries of a dense ``(n_users, n_items)`` mask."""
        users, items = mask.nonzero(as_tuple=True)  # row-major, so sorted by user
        return cls.from_coordinates(users, items, tuple(mask.shape))

    @classmethod
    def from_coordinates(cls, users: torch.Tensor, items: torch.Tensor, shape) -> "Observed":
        """Index coordinates already sorted by user (then item)."""
        n_users, n_items = shape
        item_order = torch.argsort(items * n_users + users)
        return cls(
            users=users, items=items, shape=(n_users, n_items),
            user_crow=_crow(users, n_users), item_order=item_order,
            item_crow=_crow(items[item_order], n_items), item_cols=users[item_order],
        )

    @property
    def nnz(self) -> int:
        """Number of observed ratings."""
        return self.users.numel()

    def by_user(self, values: torch.Tensor) -> torch.Tensor:
        """``(n_users, n_items)`` CSR matrix holding ``values`` (user-major order)."""
        return _csr(self.user_crow, self.items, values, self.shape)

    def by_item(self, values: torch.Tensor) -> torch.Tensor:
        """``(n_items, n_users)`` CSR matrix, the transpose, holding the same ``values``."""
        return _csr(self.item_crow, self.item_cols, values.index_select(0, self.item_order), self.shape[::-1])

    def counts(self, dtype):
        """Ratings per user and per item: the row lengths of the two CSR layouts."""
        return self.user_crow.diff().to(dtype), self.item_crow.diff().to(dtype)


def _crow(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    counts = torch.bincount(sorted_rows, minlength=n_rows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _csr(crow, cols, values, shape):
    with warnings.catch_warnings():
        # torch labels CSR "beta"; the products used here are long stable.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, size=shape, check_invariants=False)


def observed_ratings(ratings: torch.Tensor, mask: torch.Tensor | None = None):
    """Index the observed ratings of a dense (with ``mask``) or sparse COO/CSR tensor.

    Parameters
    ----------
    ratings : torch.Tensor
        ``(n_users, n_items)``: dense (then ``mask`` marks the observed
        entries), or sparse COO or CSR whose stored entries are the ratings.
    mask : torch.Tensor, optional
        Dense 0/1 mask; required with dense ``ratings``, ignored otherwise.

    Returns
    -------
    obs : Observed
    values : torch.Tensor
        ``(nnz,)`` ratings in ``obs``'s user-major order.

    Raises
    ------
    ValueError
        For a dense tensor without a mask, a COO tensor with repeated
        (user, item) pairs, or another layout.
    """
    shape = tuple(ratings.shape)
    if ratings.layout == torch.strided:
        if mask is None:
            raise ValueError("Dense ratings need a mask of the observed entries (mask=...), "
                             "or pass a sparse COO/CSR tensor.")
        obs = Observed.from_mask(mask)
        return obs, ratings[obs.users, obs.items]
    if ratings.layout == torch.sparse_coo:
        coalesced = ratings.coalesce()  # sorted by (user, item), duplicates summed
        if coalesced._nnz() != ratings._nnz():
            raise ValueError("The sparse ratings repeat some (user, item) pairs; keep one rating per pair.")
        users, items = coalesced.indices()
        return Observed.from_coordinates(users, items, shape), coalesced.values()
    if ratings.layout == torch.sparse_csr:
        crow, cols, values = ratings.crow_indices(), ratings.col_indices(), ratings.values()
        users = torch.repeat_interleave(torch.arange(shape[0], device=crow.device), crow.diff())
        order = torch.argsort(users * shape[1] + cols)  # CSR need not sort columns within a row
        return Observed.from_coordinates(users[order], cols[order], shape), values[order]
    raise ValueError(f"ratings must be dense, sparse COO or sparse CSR, not {ratings.layout}.")
