"""Surprise's NMF on PyTorch: non-negative factors by multiplicative updates.

Each epoch accumulates, over every rating at once, the numerators and
denominators of the multiplicative updates (Luo et al. 2014, as Surprise
implements them) with sparse products over the observed entries, then
rescales all factors. Factors that start non-negative stay non-negative.
"""

from __future__ import annotations

import torch

from .._config import check_bool, check_float
from ._common import (DivergenceGuard, EpochCallback, EvalData, MFModel, check_sizes, eval_rmse, record,
                      safe_counts, truncate)
from ._observed import observed_ratings

__all__ = ["train_nmf"]


def train_nmf(ratings: torch.Tensor, mask: torch.Tensor | None = None, *, n_factors: int = 15, n_epochs: int = 50,
              biased: bool = False, reg_pu: float = 0.06, reg_qi: float = 0.06, reg_bu: float = 0.02,
              reg_bi: float = 0.02, lr_bu: float = 0.005, lr_bi: float = 0.005, init_low: float = 0.0,
              init_high: float = 1.0, generator: torch.Generator | None = None,
              eval_data: EvalData | None = None, callback: EpochCallback | None = None,
              on_divergence: str = "raise") -> MFModel:
    """Fit ``r_ui ~ pu . qi`` (or ``mu + bu + bi + pu . qi``) with non-negative factors.

    Per epoch, with ``est`` the current estimates at the observed entries:
    ``pu *= (R qi) / (Est qi + n_u reg_pu pu)`` and
    ``qi *= (R^T pu) / (Est^T pu + n_i reg_qi qi)``, both from the same pass,
    as Surprise's NMF does. With ``biased``, each bias moves by ``lr`` per
    rating along its mean residual, as Surprise's per-rating SGD does over a
    pass; the step is capped at the full mean residual, so users and items
    with thousands of ratings cannot overshoot.

    Parameters
    ----------
    ratings : torch.Tensor
        ``(n_users, n_items)`` non-negative ratings: dense with a ``mask``,
        or sparse COO/CSR (stored entries are the observed ratings).
    mask : torch.Tensor, optional
        Dense 0/1 mask of the observed entries, for dense ``ratings``.
    n_factors : int, default 15
        0 fits the biases alone (with ``biased``).
    n_epochs : int, default 50
    biased : bool, default False
    reg_pu, reg_qi, reg_bu, reg_bi : float
        Regularisation of the factors and biases (per rating), >= 0.
    lr_bu, lr_bi : float
        Bias learning rates (per rating), >= 0.
    init_low, init_high : float, default 0, 1
        Uniform initialisation range of the factors; ``0 <= init_low < init_high``.
    generator : torch.Generator, optional
    eval_data : EvalData, optional
    callback : callable, optional
    on_divergence : {"raise", "recover"}, default "raise"
        What to do when training blows up: raise, or return the last sound
        epoch's model with ``diverged`` set.

    Returns
    -------
    MFModel

    Raises
    ------
    ValueError
        If a rating is negative (multiplicative updates need non-negative
        data), for ratings that are not a 2-D floating-point matrix, a mask
        of another shape, or observed ratings that are none, NaN or infinite;
        or a parameter out of its range (named in the message).
    TrainingDivergedError
        If training blows up and ``on_divergence="raise"``.
    """
    n_factors, (n_epochs,) = check_sizes(n_factors, [n_epochs])
    biased = check_bool("biased", biased)
    reg_pu, reg_qi, reg_bu, reg_bi, lr_bu, lr_bi = (check_float(name, value) for name, value in (
        ("reg_pu", reg_pu), ("reg_qi", reg_qi), ("reg_bu", reg_bu), ("reg_bi", reg_bi), ("lr_bu", lr_bu),
        ("lr_bi", lr_bi)))
    init_low = check_float("init_low", init_low)
    init_high = check_float("init_high", init_high, minimum=init_low, strict=True)
    device, dtype = ratings.device, ratings.dtype
    obs, values = observed_ratings(ratings, mask)
    n_users, n_items = obs.shape
    users, items = obs.users, obs.items
    if bool((values < 0).any()):
        raise ValueError("NMF needs non-negative ratings; shift the rating scale so that its lower "
                         "bound is >= 0 (see Reader(rating_scale=...)), or use TorchSVD.")
    count_u, count_i = obs.counts(dtype)
    mu = float(values.double().mean()) if biased else 0.0
    pattern = obs.by_user(torch.ones_like(values))
    by_user_values = obs.by_user(values)

    def uniform(n):
        out = torch.empty((n, n_factors), dtype=torch.float64)
        out.uniform_(init_low, init_high, generator=generator)
        return out.to(device=device, dtype=dtype)

    pu, qi = uniform(n_users), uniform(n_items)
    bu = torch.zeros(n_users, device=device, dtype=dtype)
    bi = torch.zeros(n_items, device=device, dtype=dtype)
    # Surprise moves a bias by lr per rating, lr * n per pass; capped at one
    # full step to the mean residual.
    step_u = (lr_bu * count_u).clamp(max=1) / safe_counts(count_u)
    step_i = (lr_bi * count_i).clamp(max=1) / safe_counts(count_i)
    hint = "Use smaller init_high or larger regularisation."

    def estimates(pu, qi, bu, bi):
        est = torch.sparse.sampled_addmm(pattern, pu, qi.T, beta=0).values()
        if biased:
            est += mu + bu.index_select(0, users) + bi.index_select(0, items)
        return est

    guard = DivergenceGuard(values - mu, on_divergence, hint)
    history: dict = {}
    kept = None  # the last state whose training RMSE was sound
    for epoch in range(1, n_epochs + 1):
        est = estimates(pu, qi, bu, bi)
        err = values - est
        sse = torch.dot(err, err)
        penalty = (reg_pu * (count_u @ pu.pow(2).sum(1)) + reg_qi * (count_i @ qi.pow(2).sum(1))
                   + (reg_bu * (count_u @ bu.pow(2)) + reg_bi * (count_i @ bi.pow(2)) if biased else 0))
        sse, penalty = torch.stack([sse, torch.as_tensor(penalty, dtype=dtype, device=device)]).tolist()
        # These metrics describe the state before this epoch's update.
        metrics = {"loss": (sse + penalty) / obs.nnz, "train_rmse": (sse / obs.nnz) ** 0.5}
        if not guard.sound(epoch, metrics):
            truncate(history, epoch - 2)  # epoch - 1's eval_rmse was of the state now dropped
            break
        kept = (pu, qi, bu, bi)
        guard.keep(epoch - 1)
        user_num, user_den = by_user_values @ qi, obs.by_user(est) @ qi
        item_num, item_den = obs.item_product(values, pu), obs.item_product(est, pu)
        user_den += reg_pu * count_u[:, None] * pu
        item_den += reg_qi * count_i[:, None] * qi
        if biased:
            sum_u = torch.zeros_like(bu).index_add_(0, users, err)
            sum_i = torch.zeros_like(bi).index_add_(0, items, err)
            bu = bu + step_u * (sum_u - reg_bu * count_u * bu)
            bi = bi + step_i * (sum_i - reg_bi * count_i * bi)
        # A zero factor stays zero, as in Surprise, and so does a row without
        # ratings (0/0), which Surprise never meets but arrays can hold.
        pu = torch.where((pu != 0) & (user_den > 0), pu * user_num / user_den, pu)
        qi = torch.where((qi != 0) & (item_den > 0), qi * item_num / item_den, qi)
        if eval_data is not None:
            metrics["eval_rmse"] = eval_rmse(eval_data, mu, pu, qi, bu, bi)
            if not guard.sound(epoch, {"eval_rmse": metrics["eval_rmse"]}):
                break
        record(history, epoch, metrics, callback)
    else:
        # The last update's result has not been measured yet.
        err = values - estimates(pu, qi, bu, bi)
        final = {"train_rmse": (float(torch.dot(err, err)) / max(obs.nnz, 1)) ** 0.5}
        if not guard.sound(n_epochs, final):
            truncate(history, n_epochs - 1)
    if guard.diverged is not None:
        # The last sound state, or (none being sound) the model that predicts the mean.
        pu, qi, bu, bi = kept if kept is not None else (torch.zeros_like(t) for t in (pu, qi, bu, bi))
    return MFModel(mu, pu, qi, bu, bi, history, diverged=guard.report())


def _nmf_memory(n_users, n_items, element_size, n_factors=15, **_):
    """Bytes of the factors and their update numerators and denominators."""
    return (n_users + n_items) * n_factors * element_size * 6


train_nmf.memory_bytes = _nmf_memory
# The widest per-epoch product: every rating against an n_factors-wide factor row.
train_nmf.work_per_rating = lambda n_factors=15, **_: n_factors
# Multiplicative updates need non-negative ratings: callers may scale them, never shift them.
train_nmf.nonnegative = True
