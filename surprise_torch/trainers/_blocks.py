"""Every row's ridge regression, by dense batched GEMMs over gathered factor blocks.

ALS solves, for every user (then every item) ``r`` with rated columns
``F_r`` (``n_r x d``) and targets ``y_r``, the system
``(F_r^T F_r + diag(p_r)) x_r = F_r^T y_r``. Built as one sparse product
against a table of every column's pairwise factor products, each rating
streams ``d(d+1)/2`` values through memory and the work is memory-bound.
Here rows are cut into segments of their ratings, the segments bucketed by
length into padded blocks, and each block's factor rows gathered into a
``(B, L, d)`` tensor: compute-bound ``bmm`` work at GEMM speed, on a CPU as on
a GPU. The layout depends only on the rating pattern, so it is built once per
fit.

Rows with fewer ratings than factors (most items of a long-tailed catalogue)
are solved in their ``n_r``-dimensional kernel form instead, by the
push-through identity ``(F^T F + P)^-1 F^T = P^-1 F^T (F P^-1 F^T + I)^-1``:
an ``n_r x n_r`` Cholesky factorization in place of a ``d x d`` one. Both
forms are exact; they differ only in float rounding.
"""

from __future__ import annotations

import bisect

import torch

from ._observed import index_dtype

#: Buckets grow by this factor in length: a segment is padded by at most 25%.
GROWTH = 1.25

#: Factor rows gathered per block (the block holds this many times ``d`` values).
BLOCK_ROWS = 2 ** 15

#: Longest segment: a row with more ratings (a popular item) is split into
#: segments this long, whose Gram matrices are summed.
MAX_SEGMENT = 2 ** 13


class RowBlocks:
    """The ratings of a CSR pattern as padded blocks of row segments, to solve every row's ridge regression.

    Parameters
    ----------
    crow : torch.Tensor
        ``(n_rows + 1,)`` CSR row pointers.
    cols : torch.Tensor
        ``(nnz,)`` column of each rating, in row order.
    n_cols : int
        Number of columns; index ``n_cols`` stands for padding (a zero row).
    d : int
        Width of the features the rows will be solved against: rows with
        fewer ratings are solved in kernel form.
    """

    def __init__(self, crow: torch.Tensor, cols: torch.Tensor, n_cols: int, d: int):
        self.n_rows = crow.numel() - 1
        device = crow.device
        counts = crow.diff()
        self.empty_rows = torch.nonzero(counts == 0).squeeze(1)
        short = (counts > 0) & (counts < d)
        # Column indices as int32 where they fit: the gather indices are the layout's largest array.
        # Only the blocks are kept; the padded columns are needed while building them.
        narrow = index_dtype(max(n_cols, cols.numel()))
        padded_cols = torch.cat([cols, cols.new_full((1,), n_cols)])
        rows = torch.arange(self.n_rows, device=device)
        # Short rows, in kernel form.
        self.short = _bucket(padded_cols, narrow, rows[short], crow[:-1][short], counts[short],
                             with_positions=True)
        # Long rows of one segment: each block's Gram matrices are factored and
        # solved at once, while they are in cache.
        whole = (counts >= d) & (counts <= MAX_SEGMENT)
        self.whole = _bucket(padded_cols, narrow, rows[whole], crow[:-1][whole], counts[whole],
                             with_positions=False)
        # The longest rows: cut into segments of MAX_SEGMENT ratings, whose Gram matrices are summed.
        split_rows = rows[counts > MAX_SEGMENT]
        split_counts = counts.index_select(0, split_rows)
        self.split_rows = split_rows
        n_segments = (split_counts + MAX_SEGMENT - 1) // MAX_SEGMENT
        local = torch.repeat_interleave(torch.arange(split_rows.numel(), device=device), n_segments)
        first = torch.cumsum(n_segments, 0) - n_segments
        index = torch.arange(local.numel(), device=device) - first.index_select(0, local)
        starts = crow.index_select(0, split_rows.index_select(0, local)) + index * MAX_SEGMENT
        lengths = torch.clamp(split_counts.index_select(0, local) - index * MAX_SEGMENT, max=MAX_SEGMENT)
        # Owners given by `local`: positions in split_rows, where their Gram matrices are summed.
        self.split = _bucket(padded_cols, narrow, local, starts, lengths, with_positions=False)

    def solve(self, features: torch.Tensor, target: torch.Tensor, rhs: torch.Tensor, penalty: torch.Tensor):
        """Solve ``(F_r^T F_r + diag(penalty_r)) x_r = F_r^T y_r`` for every row.

        Parameters
        ----------
        features : torch.Tensor
            ``(n_cols, d)`` fixed features of the columns.
        target : torch.Tensor
            ``(nnz,)`` values to fit, in row order.
        rhs : torch.Tensor
            ``(n_rows, d)``: every row's ``F_r^T y_r``.
        penalty : torch.Tensor
            ``(n_rows, d)`` positive diagonal penalties.

        Returns
        -------
        x : torch.Tensor
            ``(n_rows, d)``; 0 for rows without ratings.
        failed : torch.Tensor
            ``(n_rows,)`` bool: the rows whose system was not positive
            definite (NaN or infinite inputs); their ``x`` is meaningless. Per
            row, so that one of several stacked fits failing leaves the
            others' rows alone; a tensor, so that a GPU need not synchronise.
        """
        d = features.shape[1]
        padded = torch.cat([features, features.new_zeros((1, d))])
        padded_target = torch.cat([target, target.new_zeros(1)])
        x = features.new_empty((self.n_rows, d))
        x.index_fill_(0, self.empty_rows, 0)
        failed = torch.zeros(self.n_rows, dtype=torch.bool, device=features.device)
        eye = None
        for rows, gather, positions in self.short:
            block = padded.index_select(0, gather.reshape(-1)).view(*gather.shape, d)
            inverse = penalty.index_select(0, rows).reciprocal()
            scaled = block * inverse[:, None, :]
            kernel = torch.bmm(scaled, block.transpose(1, 2))
            if eye is None or eye.shape[0] != kernel.shape[1]:
                eye = torch.eye(kernel.shape[1], dtype=kernel.dtype, device=kernel.device)
            kernel += eye  # padding rows are zero, so their kernel rows are the identity's
            y = padded_target.index_select(0, positions.reshape(-1)).view(*positions.shape, 1)
            z, bad = _cholesky_solve(kernel, y)
            failed.index_copy_(0, rows, bad)
            x.index_copy_(0, rows, torch.bmm(scaled.transpose(1, 2), z).squeeze(-1))
        for rows, gather, _ in self.whole:
            block = padded.index_select(0, gather.reshape(-1)).view(*gather.shape, d)
            gram = torch.bmm(block.transpose(1, 2), block)
            gram.diagonal(dim1=1, dim2=2).add_(penalty.index_select(0, rows))
            solution, bad = _cholesky_solve(gram, rhs.index_select(0, rows).unsqueeze(-1))
            failed.index_copy_(0, rows, bad)
            x.index_copy_(0, rows, solution.squeeze(-1))
        if self.split_rows.numel():
            gram = features.new_zeros((self.split_rows.numel(), d, d))
            for local, gather, _ in self.split:
                block = padded.index_select(0, gather.reshape(-1)).view(*gather.shape, d)
                gram.index_add_(0, local, torch.bmm(block.transpose(1, 2), block))
            gram.diagonal(dim1=1, dim2=2).add_(penalty.index_select(0, self.split_rows))
            solution, bad = _cholesky_solve(gram, rhs.index_select(0, self.split_rows).unsqueeze(-1))
            failed.index_copy_(0, self.split_rows, bad)
            x.index_copy_(0, self.split_rows, solution.squeeze(-1))
        return x, failed


def _bucket(padded_cols, narrow, owners, starts, lengths, with_positions):
    """Bucket segments (owner, start, length) by length into padded gather blocks.

    ``padded_cols`` holds every rating's column and, last, the padding column;
    padding positions point at that last entry (and at the zero target).
    """
    order = torch.argsort(lengths, stable=True)
    owners, starts, lengths = owners[order], starts[order], lengths[order]
    sizes = lengths.tolist()
    blocks, begin = [], 0
    while begin < len(sizes):
        # Segments up to GROWTH times the shortest one share a block width.
        end = bisect.bisect_right(sizes, int(sizes[begin] * GROWTH) + 1, lo=begin)
        width = sizes[end - 1]
        per_block = max(1, BLOCK_ROWS // width)
        for lo in range(begin, end, per_block):
            hi = min(end, lo + per_block)
            offsets = torch.arange(width, device=starts.device)
            positions = starts[lo:hi, None] + offsets
            # Padding points one past the ratings: the zero row of the features, the zero target.
            positions = torch.where(offsets < lengths[lo:hi, None], positions,
                                    torch.full_like(positions, padded_cols.numel() - 1))
            gather = padded_cols.index_select(0, positions.reshape(-1)).view(hi - lo, width)
            blocks.append((owners[lo:hi], gather.to(narrow),
                           positions.to(narrow) if with_positions else None))
        begin = end
    return blocks


def _cholesky_solve(matrices, rhs):
    """Solve ``matrices x = rhs`` (symmetric positive definite, batched); also which were not (bool per matrix)."""
    chol, info = torch.linalg.cholesky_ex(matrices)
    # Two batched triangular solves: faster on the CPU than cholesky_solve's per-matrix loop.
    half = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(chol.transpose(1, 2), half, upper=True), info != 0
