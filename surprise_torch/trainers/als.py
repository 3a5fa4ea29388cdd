"""Alternating least squares: every row's normal equations, by conjugate gradients or exactly.

Each half-sweep fixes one side's factors and solves every user's (then every
item's) regularised least-squares problem. By default each takes a few
conjugate-gradient steps from its current value, all rows at once, applying
the normal-equation matrices without forming them (see
:class:`._observed.NormalOperator`): ``O(nnz k)`` work per step. Exact solves
(``solver="cholesky"``) bucket rows by rating count into padded blocks, build
each block's normal-equation matrices by one batched GEMM over its gathered
factor rows and solve them by one batched Cholesky (see :mod:`._blocks`). No
optimizer, no learning rate; 10 sweeps converge.
"""

from __future__ import annotations

import numpy as np
import torch

from .._config import check_bool, check_choice, check_float, check_int
from . import _blocks
from ._blocks import RowBlocks, _cholesky_solve
from ._common import (DivergenceGuard, EpochCallback, EvalData, MFModel, TrainingDivergedError, all_finite,
                      check_sizes, check_penalties, eval_rmse, init_factors, no_prior, record, safe_counts, with_prior)
from ._observed import CSRProduct, NormalOperator, Observed, csr_tensor, observed_ratings, rating_shape
from ._stack import Stack, centred, fit_list, keep_rows, per_fit, per_row

__all__ = ["train_als", "train_als_stacked", "solve_ridge_rows", "complete_als"]


def solve_ridge_rows(weights: torch.Tensor, target: torch.Tensor, features: torch.Tensor,
                     penalty: torch.Tensor) -> torch.Tensor:
    """Solve one ridge regression per row of ``weights``, all at once.

    Row ``u`` solves ``min_x sum_j weights[u, j] (t_uj - features[j] . x)^2
    + sum_f penalty[u, f] x_f^2``, whose normal equations are
    ``(F^T diag(weights[u]) F + diag(penalty[u])) x = F^T (weights[u] * t_u)``.

    Parameters
    ----------
    weights : torch.Tensor
        ``(n_rows, n_cols)`` 0/1 weights of the observed entries, dense or
        sparse CSR.
    target : torch.Tensor
        ``(n_rows, n_cols)`` weighted values to fit (``weights * t``), in the
        same layout.
    features : torch.Tensor
        ``(n_cols, d)`` fixed features of the columns.
    penalty : torch.Tensor or float
        ``(n_rows, d)`` diagonal ridge penalty of each row, or anything that
        broadcasts to it (one value for all); must make every system
        positive definite (any positive value does).

    Returns
    -------
    torch.Tensor
        ``(n_rows, d)`` solutions.

    Raises
    ------
    ValueError
        If the shapes or dtypes do not fit together (named in the message).
    TrainingDivergedError
        If a system is not positive definite (NaN/inf inputs, zero penalty).
    """
    _check_ridge_inputs(weights, target, features, penalty)
    gram = _gram_lower(lambda table: weights @ table, weights.shape[0], features)
    gram.diagonal(dim1=1, dim2=2).add_(penalty)
    x, failed = _cholesky_solve(gram, (target @ features).unsqueeze(-1))
    if bool(failed.any()):
        raise TrainingDivergedError(
            "A least-squares system was not positive definite (NaN or infinite values, or reg=0 "
            "with too few ratings); use a larger reg."
        )
    return x.squeeze(-1)


def _check_ridge_inputs(weights, target, features, penalty):
    """``ValueError`` where :func:`solve_ridge_rows`' arguments do not fit together (torch's own errors name
    shapes of the intermediate products, not the arguments)."""
    if weights.dim() != 2 or target.shape != weights.shape:
        raise ValueError(f"weights and target must be 2-D and of one shape; got {tuple(weights.shape)} and "
                         f"{tuple(target.shape)}.")
    if features.dim() != 2 or features.shape[0] != weights.shape[1]:
        raise ValueError(f"features must be (n_cols, d) = ({weights.shape[1]}, d), one row per column of weights; "
                         f"got {tuple(features.shape)}.")
    dtypes = {t.dtype for t in (weights, target, features)}
    if len(dtypes) > 1:
        raise ValueError(f"weights, target and features must share a dtype; got {sorted(map(str, dtypes))}.")
    if isinstance(penalty, torch.Tensor):
        solutions = (weights.shape[0], features.shape[1])
        try:
            fits = torch.broadcast_shapes(penalty.shape, solutions) == solutions
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"penalty must broadcast to (n_rows, d) = {solutions}; got {tuple(penalty.shape)}.")


def _gram_lower(multiply, n_rows, features):
    """Every row's Gram matrix ``F^T diag(weights[u]) F``, lower triangle only, upper zero.

    One (sparse) GEMM, ``multiply(table) = weights @ table``, against the
    products ``f_a f_b`` of every feature pair with ``a >= b``: half the work
    of the full ``d x d``, and all that the Cholesky factorization reads.
    """
    d = features.shape[1]
    rows, cols = torch.tril_indices(d, d, device=features.device)
    lower = multiply(features.index_select(1, rows) * features.index_select(1, cols))
    gram = features.new_zeros((n_rows, d * d))
    gram.index_copy_(1, rows * d + cols, lower)
    return gram.view(n_rows, d, d)


def train_als(ratings: torch.Tensor, mask: torch.Tensor | None = None, *, n_factors: int = 20,
              n_epochs: int = 10, biased: bool = True, reg: float = 0.12, reg_bu: float = 0.06,
              reg_bi: float = 0.06, weighted_reg: bool = True, prior_bias: float = 0.0,
              prior_factors: float = 0.0, init_mean: float = 0.0,
              init_std_dev: float = 0.1, generator: torch.Generator | None = None,
              eval_data: EvalData | None = None, callback: EpochCallback | None = None,
              group=None, on_divergence: str = "raise", solver: str = "cg", cg_steps: int = 3,
              overwrite_ratings: bool = False) -> MFModel:
    """Fit ``r_ui ~ mu + bu + bi + pu . qi`` (or ``pu . qi``) by alternating least squares.

    Minimises ``sum (r_ui - est)^2 + sum_u (reg (s_u + prior_factors) |pu|^2
    + reg_bu (s_u + prior_bias) bu^2) + sum_i (reg (s_i + prior_factors)
    |qi|^2 + reg_bi (s_i + prior_bias) bi^2)`` with ``s`` the rating count of
    each user/item when ``weighted_reg`` (ALS-WR, Zhou et al. 2008), else 1;
    the priors are 0 by default.
    A user's bias is solved jointly with its factors (an extra constant
    feature), so each half-sweep is exact and the objective never rises.

    The products run over the observed entries only (CSR sparse-dense
    GEMMs), which on rating data is several times less work than the dense
    matrix.

    With a ``group`` (``torch.distributed``, e.g. launched by ``torchrun``),
    every process calls this with the same ratings and seed: users and items
    are split into contiguous shards by rank, each process solves its shard
    of each half-sweep, and the shards are exchanged with ``all_gather``.
    Every process ends with the whole model, the same as one process would
    have fitted, up to float rounding.

    Parameters
    ----------
    ratings : torch.Tensor
        ``(n_users, n_items)`` ratings: dense with a ``mask``, or sparse
        COO/CSR (stored entries are the observed ratings).
    mask : torch.Tensor, optional
        Dense 0/1 mask of the observed entries, for dense ``ratings``.
    n_factors : int, default 20
        0 fits the biases alone.
    n_epochs : int, default 10
        Sweeps; each solves all users, then all items. 0 returns the initial
        (random) factors.
    biased : bool, default True
    reg, reg_bu, reg_bi : float
        Regularisation of the factors and of the user and item biases:
        non-negative, and positive with ``solver="cg"``.
    weighted_reg : bool, default True
        Scale each row's regularisation by its number of ratings.
    prior_bias, prior_factors : float, default 0, 0
        Pseudo-ratings added to each row's count in its bias's and its
        factors' penalties: rows with a few ratings are held as if they had
        this many more (see :func:`~surprise_torch.train_svd`'s ``prior``).
        Non-negative.
    init_mean, init_std_dev : float
        Normal initialisation of the item factors (the first half-sweep
        overwrites the user factors).
    generator : torch.Generator, optional
    eval_data : EvalData, optional
        Ratings whose RMSE is recorded after every sweep.
    callback : callable, optional
        ``callback(epoch, metrics)`` after every sweep.
    group : torch.distributed.ProcessGroup, optional
        Train across this group's processes (``torch.distributed.group.WORLD``
        for all); None trains in this process alone.
    on_divergence : {"raise", "recover"}, default "raise"
        What to do when a sweep blows up (a system that is not positive
        definite, a NaN, or a training RMSE far above predicting the mean):
        raise, or return the last sound sweep's model with ``diverged`` set.
    solver : {"cholesky", "cg"}, default "cg"
        "cholesky" solves every row's normal equations exactly (batched
        Gram matrices and Cholesky factorizations, ``O(nnz d^2)`` a sweep).
        "cg" takes ``cg_steps`` conjugate-gradient steps per row and
        half-sweep instead, started from the row's current value (as
        implicit's ALS does), without forming the Gram matrices
        (``O(nnz d cg_steps)``): inexact, so each half-sweep only approaches
        its least-squares solution, but the sweeps converge to the same
        model. Several times faster with many factors at scale; see the
        README for its held-out RMSE against exact solves.
    cg_steps : int, default 3
        Conjugate-gradient steps per half-sweep with ``solver="cg"``.
    overwrite_ratings : bool, default False
        Centre the values of a sparse ``ratings`` tensor where they are,
        instead of in a copy (see :func:`~surprise_torch.train_svd`).

    Returns
    -------
    MFModel

    Raises
    ------
    ValueError
        For ratings that are not a 2-D floating-point matrix, a mask of
        another shape, or observed ratings that are none, NaN or infinite;
        or a parameter out of its range (named in the message).
    TrainingDivergedError
        If training blows up and ``on_divergence="raise"``.
    """
    return _fit_als(ratings, mask, Stack.single(*rating_shape(ratings)), n_factors=n_factors, n_epochs=[n_epochs],
                    biased=biased, reg=[reg], reg_bu=[reg_bu], reg_bi=[reg_bi], weighted_reg=weighted_reg,
                    prior_bias=[prior_bias], prior_factors=[prior_factors], init_mean=init_mean,
                    init_std_dev=init_std_dev, generators=[generator], eval_data=eval_data, callback=callback,
                    group=group, on_divergence=on_divergence, solver=solver, cg_steps=cg_steps,
                    overwrite_ratings=overwrite_ratings)[0]


def train_als_stacked(ratings: torch.Tensor, mask: torch.Tensor | None = None, *, stack: Stack,
                      n_factors: int = 20, n_epochs=10, biased: bool = True, reg=0.12, reg_bu=0.06, reg_bi=0.06,
                      weighted_reg: bool = True, prior_bias=0.0, prior_factors=0.0, init_mean: float = 0.0,
                      init_std_dev: float = 0.1, generator=None, group=None, on_divergence: str = "raise",
                      solver: str = "cg", cg_steps: int = 3, overwrite_ratings: bool = False) -> list:
    """Fit several independent ALS models at once, stacked block-diagonally.

    ``ratings`` holds every fit's ratings in its own diagonal block (see
    :class:`~surprise_torch.trainers._stack.Stack`); each half-sweep builds
    and factors every fit's normal equations in the same batched products.
    Fit ``b`` ends equal, up to float rounding, to :func:`train_als` on its
    block alone with its own ``n_epochs``, ``reg``, ``reg_bu``, ``reg_bi``,
    ``prior_bias``, ``prior_factors`` and ``generator``.

    Parameters
    ----------
    ratings, mask : torch.Tensor
        The stacked ``(n_users, n_items)`` ratings, as for :func:`train_als`;
        no rating may lie outside the diagonal blocks.
    stack : Stack
        Each fit's user and item rows.
    n_epochs : int or list of int
        Sweeps of every fit, or of each.
    reg, reg_bu, reg_bi, prior_bias, prior_factors : float or list of float
        Regularisation and priors of every fit, or of each.
    generator : torch.Generator or list of torch.Generator, optional
        One generator per fit for the initial factors.
    n_factors, biased, weighted_reg, init_mean, init_std_dev, on_divergence, solver, cg_steps, overwrite_ratings
        As for :func:`train_als`, shared by every fit.
    group : None
        Stacked fits train in one process; anything but None is refused.

    Returns
    -------
    list of MFModel
        One per fit; a fit that blew up reports it in its own ``diverged``
        and returns its last sound sweep's model.
    """
    n = stack.n_fits
    return _fit_als(ratings, mask, stack, n_factors=n_factors, n_epochs=fit_list(n_epochs, n, "n_epochs"),
                    biased=biased, reg=fit_list(reg, n, "reg"), reg_bu=fit_list(reg_bu, n, "reg_bu"),
                    reg_bi=fit_list(reg_bi, n, "reg_bi"), weighted_reg=weighted_reg,
                    prior_bias=fit_list(prior_bias, n, "prior_bias"),
                    prior_factors=fit_list(prior_factors, n, "prior_factors"), init_mean=init_mean,
                    init_std_dev=init_std_dev, generators=fit_list(generator, n, "generator"), eval_data=None,
                    callback=None, group=group, on_divergence=on_divergence, solver=solver, cg_steps=cg_steps,
                    overwrite_ratings=overwrite_ratings)


def _fit_als(ratings, mask, stack, *, n_factors, n_epochs, biased, reg, reg_bu, reg_bi, weighted_reg, prior_bias,
             prior_factors, init_mean, init_std_dev, generators, eval_data, callback, group, on_divergence, solver,
             cg_steps, overwrite_ratings=False):
    """The ALS trainer for ``stack.n_fits`` stacked fits (one for :func:`train_als`); per-fit lists of
    ``n_epochs``, ``reg``, ``reg_bu``, ``reg_bi``, ``prior_bias``, ``prior_factors`` and ``generators``."""
    device, dtype = ratings.device, ratings.dtype
    n_users, n_items = rating_shape(ratings)
    stack.check(ratings.shape)
    if group is not None and stack.n_fits > 1:  # the shards and sums below are per process, not per fit
        raise ValueError("Distributed training (group=...) takes one fit at a time, not a stack.")
    k, n_epochs = check_sizes(n_factors, n_epochs)
    biased, weighted_reg = check_bool("biased", biased), check_bool("weighted_reg", weighted_reg)
    reg, reg_bu, reg_bi, prior_bias, prior_factors = (
        [check_float(name, value) for value in values]
        for name, values in (("reg", reg), ("reg_bu", reg_bu), ("reg_bi", reg_bi), ("prior_bias", prior_bias),
                             ("prior_factors", prior_factors)))
    init_mean = check_float("init_mean", init_mean, minimum=float("-inf"))
    init_std_dev = check_float("init_std_dev", init_std_dev)
    exact = check_choice("solver", solver, ("cholesky", "cg")) == "cholesky"
    cg_steps = check_int("cg_steps", cg_steps)
    if not exact:
        # A singular system (no penalty, too few ratings) fails Cholesky, which the divergence guard then
        # reports; conjugate gradients instead step without bound along its null space, silently.
        for name, per_fit_values in (("reg", reg), ("reg_bu", reg_bu if biased else []),
                                     ("reg_bi", reg_bi if biased else [])):
            if any(not value > 0 for value in per_fit_values):
                raise ValueError(f"solver='cg' needs a positive {name}; use a positive {name}, or "
                                 "solver='cholesky', which reports singular systems.")
    comm = _Exchange(group)
    # One process's share of a distributed fit may hold no rating.
    obs, values = observed_ratings(ratings, mask, allow_empty=group is not None)
    fits = range(stack.n_fits)
    n_u, n_i, n_r = stack.lengths("users"), stack.lengths("items"), stack.rating_lengths(obs.user_crow)
    # A fit's ratings are contiguous in item-major order too, as its items are.
    n_r_items = stack.rating_lengths(obs.item_crow, "items")
    mus, target = centred(values, n_r, biased, inplace=overwrite_ratings)
    d = k + 1 if biased else k
    # From the whole matrix, which every process of a distributed fit holds: all refuse, or none.
    most = [float(c.max()) if weighted_reg and c.numel() else 1.0 for c in obs.counts(torch.float64)]
    check_penalties(dtype, [("reg and prior_factors", max(reg), max(prior_factors), max(most)),
                            *([("reg_bu and prior_bias", max(reg_bu), max(prior_bias), most[0]),
                               ("reg_bi and prior_bias", max(reg_bi), max(prior_bias), most[1])] if biased else [])])
    user_side = _Side.of_users(obs, target, comm, d, exact)
    item_side = _Side.of_items(obs, target, comm, d, exact)

    # Drawn in full on every process, in the single-process order, so that
    # every process starts from the same factors as one process would; each
    # stacked fit from its own generator, as it would alone.
    starts = [(init_factors(n_u[b], k, init_mean, init_std_dev, generators[b], device, dtype),
               init_factors(n_i[b], k, init_mean, init_std_dev, generators[b], device, dtype)) for b in fits]
    pu = torch.cat([start[0] for start in starts])
    qi = torch.cat([start[1] for start in starts])
    bu = torch.zeros(n_users, device=device, dtype=dtype)
    bi = torch.zeros(n_items, device=device, dtype=dtype)
    ones_u = torch.ones((n_users, 1), device=device, dtype=dtype)
    ones_i = torch.ones((n_items, 1), device=device, dtype=dtype)
    pen_u = user_side.penalty(k, per_row(reg, n_u, values), per_row(reg_bu, n_u, values) if biased else None,
                              weighted_reg, per_row(prior_factors, n_u, values), per_row(prior_bias, n_u, values))
    pen_i = item_side.penalty(k, per_row(reg, n_i, values), per_row(reg_bi, n_i, values) if biased else None,
                              weighted_reg, per_row(prior_factors, n_i, values), per_row(prior_bias, n_i, values))
    hint = "Use a larger reg, reg_bu or reg_bi."

    def half(side, features, offset, penalty, current, row_lengths, rating_lengths, measure=True):
        """Solve one side; return its rows and a function giving each fit's residual sum of squares there.

        ``current`` gives the side's present rows, where conjugate gradients start. Without ``measure``
        (the user side, whose residuals the loss does not use) they skip their sums of squares. The
        function takes each row's ``x.P.x``, which the loss computes anyway.
        """
        if not exact:
            x, sse_rows = side.solve_cg(features, offset, penalty, current(), cg_steps, measure)
            return x, lambda pen_x: per_fit(sse_rows, row_lengths)
        x, rhs, y = side.solve(features, offset, penalty)
        # From the normal equations (G + P) x = b:  |y|^2 - 2 x.b + x.G.x = |y|^2 - x.b - x.P.x.
        # No pass over the ratings is needed.
        return x, lambda pen_x: (per_fit(y, rating_lengths, square=True)
                                 - per_fit((x * rhs).sum(1) + pen_x, row_lengths))

    guards = [DivergenceGuard(part, on_divergence, hint) for part in target.split(n_r)]
    histories = [{} for _ in fits]
    sides = ["users", "items", "users", "items"]
    # Each fit's last sound state; zeros (the model that predicts the mean) until it has one.
    kept = [torch.zeros_like(t) for t in (pu, qi, bu, bi)]
    keep_rows(kept, (pu, qi, bu, bi), sides, stack, [b for b in fits if n_epochs[b] == 0])
    running = {b for b in fits if n_epochs[b] > 0}
    for epoch in range(1, max(n_epochs) + 1):
        if not running:
            break
        if biased:
            # Users fit r - mu - bi with features [qi, 1]: the 1 column's weight is bu.
            x_u, _ = half(user_side, torch.cat([qi, ones_i], 1), bi, pen_u, lambda: torch.cat([pu, bu[:, None]], 1),
                          n_u, n_r, measure=False)
            x_all = comm.gather(x_u, n_users)
            pu, bu = x_all[:, :k], x_all[:, k]
            x_i, sse = half(item_side, torch.cat([pu, ones_u], 1), bu, pen_i, lambda: torch.cat([qi, bi[:, None]], 1),
                          n_i, n_r_items)
            x_all = comm.gather(x_i, n_items)
            qi, bi = x_all[:, :k], x_all[:, k]
        else:
            x_u, _ = half(user_side, qi, None, pen_u, lambda: pu, n_u, n_r, measure=False)
            pu = comm.gather(x_u, n_users)
            x_i, sse = half(item_side, pu, None, pen_i, lambda: qi, n_i, n_r_items)
            qi = comm.gather(x_i, n_items)
        pen_x_u, pen_x_i = (pen_u * x_u.pow(2)).sum(1), (pen_i * x_i.pow(2)).sum(1)
        sums = comm.sum(torch.stack([sse(pen_x_i), per_fit(pen_x_u, n_u) + per_fit(pen_x_i, n_i)]))
        sound = []
        for b, (sse_b, penalty_b) in enumerate(zip(*sums.tolist())):
            if b not in running:
                continue
            sse_b = max(sse_b, 0.0) if sse_b == sse_b else sse_b  # rounding can take an almost perfect fit below zero
            metrics = {"loss": (sse_b + penalty_b) / max(n_r[b], 1), "train_rmse": sse_b ** 0.5 / max(n_r[b], 1) ** 0.5}
            if eval_data is not None:  # a lone fit (train_als)
                metrics["eval_rmse"] = eval_rmse(eval_data, mus[b], pu, qi, bu, bi)
            if not guards[b].sound(epoch, metrics):
                running.discard(b)
                continue
            guards[b].keep(epoch)
            record(histories[b], epoch, metrics, callback)
            sound.append(b)
            if epoch == n_epochs[b]:
                running.discard(b)
        keep_rows(kept, (pu, qi, bu, bi), sides, stack, sound)
    return [MFModel(mus[b], *(stack.select(t, side, b).clone() for t, side in zip(kept, sides)), histories[b],
                    diverged=guards[b].report()) for b in fits]


class _Exchange:
    """The collectives of distributed ALS; in a single process, identities."""

    def __init__(self, group):
        self.group = group
        if group is None:
            self.rank, self.world = 0, 1
        else:
            import torch.distributed as dist

            if not dist.is_initialized():
                raise ValueError("group was given but torch.distributed is not initialised; launch with "
                                 "torchrun and call torch.distributed.init_process_group() first.")
            self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)

    def shard(self, n):
        """This process's contiguous slice ``[lo, hi)`` of ``n`` rows."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def gather(self, local, n):
        """Concatenate every process's shard of an ``(n, d)`` matrix, in rank order."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        # all_gather wants equal sizes: pad every shard to the largest.
        size = -(-n // self.world)
        padded = local.new_zeros((size, local.shape[1]))
        padded[:local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([part[:(n * (r + 1) // self.world) - (n * r // self.world)]
                          for r, part in enumerate(parts)])

    def sum(self, tensor):
        """Sum a tensor over the processes."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, group=self.group)
        return tensor


#: Feature widths (``n_factors + 1`` with biases) up to which a side builds its
#: Gram matrices by one sparse product against a table of every column's
#: ``d(d+1)/2`` feature products, instead of :class:`RowBlocks`' gathered
#: blocks: at these widths the table is small enough to stay in cache, and
#: batched GEMMs of width ``d`` are inefficient. ML-100K, one thread: d = 11
#: 1.9-2.3x faster by the table, d = 21 even, d = 51 twice slower.
TABLE_MAX_WIDTH = 16


class _Side:
    """One side (users or items) of the problem, as far as this process solves it.

    Holds the ratings of its rows ``[lo, hi)`` in CSR form, row-major, with
    the other side's ids as columns. A side that conjugate gradients apply
    only through ``normal`` (the item side of a one-process fit) has no
    ``cols`` and ``target``: its operator's tiles hold the ratings.
    """

    def __init__(self, crow, cols, target, shape, d, tiled, rows, exact=True, normal=None):
        self.crow, self.cols, self.target, self.shape, self.rows = crow, cols, target, shape, rows
        self.counts = crow.diff().to(normal.dtype if normal is not None else target.dtype)
        # Exact solves build Gram matrices (row blocks, or the product table when narrow);
        # conjugate-gradient solves only apply them.
        self.blocks = RowBlocks(crow, cols, shape[1], d) if exact and d > TABLE_MAX_WIDTH else None
        if normal is None and not exact:
            normal = NormalOperator(crow, cols, target, shape, d)
        self.normal = normal
        # Exact solves' right-hand sides; a side held only by its operator has no columns to multiply by.
        self.product = CSRProduct(crow, cols, shape, tiled=tiled) if cols is not None else None
        self._pattern = None

    @classmethod
    def of_users(cls, obs: Observed, target, comm, d, exact=True):
        lo, hi = comm.shard(obs.shape[0])
        start, end = int(obs.user_crow[lo]), int(obs.user_crow[hi])
        return cls(obs.user_crow[lo:hi + 1] - start, obs.items[start:end], target[start:end],
                   (hi - lo, obs.shape[1]), d, tiled=False, rows=(lo, hi), exact=exact)

    @classmethod
    def of_items(cls, obs: Observed, target, comm, d, exact=True):
        lo, hi = comm.shard(obs.shape[1])
        if not exact and (lo, hi) == (0, obs.shape[1]):
            # Conjugate gradients over every item apply the side only through its operator, whose
            # tiles come from the user-major layout: no item-major index is built (its columns and
            # ratings, None here, would be used by exact solves only).
            return cls(obs.item_crow, None, None, obs.shape[::-1], d, tiled=True, rows=(lo, hi), exact=False,
                       normal=NormalOperator.of_items(obs, target, d))
        start, end = int(obs.item_crow[lo]), int(obs.item_crow[hi])
        order = obs.item_order[start:end]
        return cls(obs.item_crow[lo:hi + 1] - start, obs.item_cols[start:end], target.index_select(0, order),
                   (hi - lo, obs.shape[0]), d, tiled=True, rows=(lo, hi), exact=exact)

    def penalty(self, k, reg, reg_bias, weighted, prior=0.0, prior_bias=0.0):
        """Each row's diagonal ridge penalty: ``reg`` per factor (then ``reg_bias``), times its count if
        ``weighted`` (else 1) plus the factors' ``prior`` (the bias's ``prior_bias``).

        ``reg``, ``reg_bias`` and the priors are floats, or (stacked fits) one value per row.
        """
        lam = self.counts.new_empty((self.counts.numel(), k + (reg_bias is not None)))
        lam[:, :k] = reg[:, None] if isinstance(reg, torch.Tensor) else reg
        if reg_bias is not None:
            lam[:, k] = reg_bias
        scale = safe_counts(self.counts) if weighted else torch.ones_like(self.counts)
        if no_prior(prior) and no_prior(prior_bias):
            return scale[:, None] * lam
        lam[:, :k] *= with_prior(scale, prior)[:, None]
        if reg_bias is not None:
            lam[:, k] *= with_prior(scale, prior_bias)
        return lam

    def solve(self, features, offset, penalty, adjust=None):
        """Solve this side's rows against fixed ``features``, fitting ``target - offset[cols] (+ adjust)``.

        ``adjust`` is a per-rating tensor added to the fitted values (the
        Bayesian sampler's perturbations). Returns the solutions, the
        right-hand sides, and the fitted values.
        """
        y = self.target if offset is None else self.target - offset.index_select(0, self.cols)
        if adjust is not None:
            y = y + adjust
        rhs = self.product(y, features)
        if self.blocks is None:
            ones = torch.ones_like(y)
            gram = _gram_lower(lambda table: self.product(ones, table), self.shape[0], features)
            gram.diagonal(dim1=1, dim2=2).add_(penalty)
            x, failed = _cholesky_solve(gram, rhs.unsqueeze(-1))
            x = x.squeeze(-1)
        else:
            x, failed = self.blocks.solve(features, y, rhs, penalty)
        # NaN rather than an error, so that the trainer's divergence guard
        # (which every process of a distributed fit sees alike) decides, fit by fit.
        x.masked_fill_(failed[:, None], float("nan"))
        return x, rhs, y

    def solve_cg(self, features, offset, penalty, start, steps, measure=True):
        """Approach this side's solutions by ``steps`` conjugate-gradient steps from ``start``.

        The same systems as :meth:`solve` (``offset`` and ``penalty`` alike),
        every row's CG run side by side: each step is one
        :meth:`NormalOperator.apply` for all rows, with per-row step sizes.
        Returns the new rows and, if ``measure``, each row's sum of squared
        residuals at them (else None).
        """
        lo, hi = self.rows
        x = start[lo:hi].clone()
        gradient, sse0 = self.normal.residual(x, features, offset, sse=measure)
        r = gradient - penalty * x  # b - A x, as F^T e0 = b - G x
        r0 = r.clone()
        p = r.clone()
        # Per-row dot products (vecdot multiplies into a product tensor, then sums each row).
        rr = torch.linalg.vecdot(r, r)
        for step in range(steps):
            ap = self.normal.apply(p, features).addcmul_(penalty, p)
            pap = torch.linalg.vecdot(p, ap)
            # A row already solved exactly has p = 0: it stays put instead of dividing 0 by 0.
            alpha = torch.where(pap > 0, rr / pap, torch.zeros_like(rr))
            x.addcmul_(alpha[:, None], p)
            r.addcmul_(alpha[:, None], ap, value=-1)
            if step + 1 < steps:
                rr_next = torch.linalg.vecdot(r, r)
                beta = torch.where(rr > 0, rr_next / rr, torch.zeros_like(rr))
                p = p.mul_(beta[:, None]).add_(r)
                rr = rr_next
        if not measure:
            return x, None
        # |e(x)|^2 = |e0 - F delta|^2 = |e0|^2 - 2 delta.F^T e0 + delta.G delta, with delta = x - x0 and
        # G delta = A delta - P delta = (r0 - r) - P delta: no other pass over the ratings.
        delta = x - start[lo:hi]
        sse = sse0 - (delta * (2 * gradient - (r0 - r) + penalty * delta)).sum(1)
        return x, sse

    def dots(self, x, features):
        """``x[row] . features[col]`` for every rating of this side, in its order (one sampled product).

        The result is a new tensor; the product itself writes into one kept
        sparse result, which saves an allocation and a copy of the pattern.
        """
        if self._pattern is None:
            self._pattern = csr_tensor(self.crow, self.cols, torch.ones_like(self.target), self.shape)
            self._dots = torch.sparse.sampled_addmm(self._pattern, x, features.T, beta=0)
        else:
            torch.sparse.sampled_addmm(self._pattern, x, features.T, beta=0, out=self._dots)
        return self._dots.values().clone()


def _als_memory(n_users, n_items, element_size, n_factors=20, n_ratings=0, solver="cg", **_):
    """Bytes of the factors and of the larger half-sweep's working set.

    Exact solves: its Gram matrices and their Cholesky factors (at most one
    per row) and a few gathered blocks, and both sides' row-block layouts
    (two int32 indices per padded rating). Conjugate gradients: about eight
    row vectors per row of the larger side, and both sides' tiles (the fitted
    values, a scratch copy and an int32 index per rating).
    """
    d = n_factors + 1
    factors = (n_users + n_items) * d * 4
    if solver == "cg":
        return (factors + 8 * max(n_users, n_items) * d) * element_size + 2 * n_ratings * (2 * element_size + 4)
    half = 2 * max(n_users, n_items) * d * d + 4 * _blocks.BLOCK_ROWS * d
    layout = 2 * n_ratings * _blocks.GROWTH * 2 * 4
    return (factors + half) * element_size + int(layout)


train_als.memory_bytes = _als_memory


def _als_work(n_factors=20, solver="cg", cg_steps=3, **_):
    """Multiply-adds per rating and half-sweep: a Gram matrix's lower triangle, or (cg) every step's products."""
    d = n_factors + 1
    return 2 * d * (cg_steps + 1) if solver == "cg" else d * (d + 1) // 2


train_als.work_per_rating = _als_work


def complete_als(matrix: torch.Tensor, n_factors: int = 5, n_epochs: int = 10,
                 generator: torch.Generator | None = None):
    """Factor a complete matrix ``X ~ U @ V`` by alternating exact least squares.

    Section 1.1 of the blog post this library grew from, on today's
    ``torch.linalg.lstsq``: with every entry observed, each half-sweep is one
    ordinary least-squares problem with many right-hand sides.

    Parameters
    ----------
    matrix : torch.Tensor, numpy.ndarray or nested list
        ``(n_rows, n_cols)`` fully observed, finite matrix. Tensors keep their
        device and floating dtype (integers become float32); arrays and lists
        become float64 tensors on the CPU.
    n_factors : int, default 5
    n_epochs : int, default 10
    generator : torch.Generator, optional
        CPU generator for the initial ``U``.

    Returns
    -------
    U : torch.Tensor
        ``(n_rows, n_factors)``.
    V : torch.Tensor
        ``(n_factors, n_cols)``.
    rmse : list of float
        Reconstruction RMSE after each epoch.

    Raises
    ------
    ValueError
        If ``matrix`` is not a non-empty, finite, real 2-D matrix (a sparse
        tensor is refused: it has missing entries), or ``n_factors`` or
        ``n_epochs`` is not a positive integer.
    """
    n_factors = check_int("n_factors", n_factors)
    n_epochs = check_int("n_epochs", n_epochs)
    matrix = _as_complete_matrix(matrix)
    if not all_finite(matrix):
        raise ValueError("matrix holds NaN or infinite values; complete_als needs every entry. "
                         "Use TorchALS for matrices with missing entries.")
    u = torch.randn((matrix.shape[0], n_factors), generator=generator, dtype=torch.float64)
    u = u.to(device=matrix.device, dtype=matrix.dtype)
    rmse = []
    for _ in range(n_epochs):
        v = torch.linalg.lstsq(u, matrix).solution
        u = torch.linalg.lstsq(v.T, matrix.T).solution.T
        rmse.append(float((u @ v - matrix).pow(2).mean().sqrt()))
    return u, v, rmse


def _as_complete_matrix(matrix) -> torch.Tensor:
    """``matrix`` as a dense floating 2-D tensor, or a ``ValueError`` saying what is wrong."""
    if isinstance(matrix, torch.Tensor):
        if matrix.layout != torch.strided:
            raise ValueError("complete_als needs a complete matrix, not a sparse tensor (its unstored entries are "
                             "missing ratings); use TorchALS or train_als for matrices with missing entries, or "
                             "pass matrix.to_dense() if the zeros are real values.")
        if matrix.is_complex():
            raise ValueError("complete_als needs a real matrix, got a complex tensor.")
        if not matrix.is_floating_point():
            matrix = matrix.float()
    else:
        try:
            array = np.asarray(matrix, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"complete_als needs a 2-D matrix of numbers: {exc}") from None
        matrix = torch.from_numpy(array)
    if matrix.ndim != 2:
        raise ValueError(f"complete_als needs a 2-D matrix, got shape {tuple(matrix.shape)}.")
    if matrix.numel() == 0:
        raise ValueError(f"complete_als needs a non-empty matrix, got shape {tuple(matrix.shape)}.")
    return matrix
# Model selection stacks many fits of one trainer into one program (see ._stack).
train_als.stacked = train_als_stacked
