"""Matrix factorization trained by gradient descent: Surprise's SVD on PyTorch.

The trainer works on all ratings at once: each epoch is one pass over every
rating, done as three sparse products over the observed entries (a sampled
GEMM for the residuals, then the gradients of both factor matrices) followed
by one optimizer step. This replaces the
per-rating Python/Cython loop with work that BLAS (or a GPU) does at full
speed, and lets any ``torch.optim`` optimizer drive the updates.
"""

from __future__ import annotations

import torch

from . import _optim
from ._common import (DivergenceGuard, EpochCallback, EvalData, MFModel, eval_rmse, init_factors, record,
                      safe_counts, truncate)
from ._observed import observed_ratings

__all__ = ["train_svd", "OPTIMIZERS"]

#: Optimizers accepted by name: torch.optim's updates with their default settings, as
#: plain tensor code (see :mod:`._optim` for why); any ``torch.optim.Optimizer`` subclass works too.
OPTIMIZERS = {"sgd": _optim.SGD, "rmsprop": _optim.RMSprop, "adam": _optim.Adam}

_TERMS = ("bu", "bi", "pu", "qi", "yj")


def train_svd(ratings: torch.Tensor, mask: torch.Tensor | None = None, *, n_factors: int = 100, n_epochs: int = 30,
              biased: bool = True, implicit: bool = False, init_mean: float = 0.0,
              init_std_dev: float = 0.1, lr: dict | None = None, reg: dict | None = None,
              optimizer="adam", generator: torch.Generator | None = None,
              eval_data: EvalData | None = None, callback: EpochCallback | None = None,
              on_divergence: str = "raise") -> MFModel:
    """Fit Surprise's SVD (or, with ``implicit``, SVD++) by full-batch gradient steps.

    The model is ``r_ui ~ mu + bu + bi + qi . (pu + |N(u)|^-1/2 sum_{j in N(u)} yj)``,
    without the ``yj`` sum unless ``implicit`` and without ``mu + bu + bi``
    unless ``biased``. The objective is Surprise's, summed over observed
    ratings: ``(r_ui - est)^2 + reg_bu bu^2 + reg_bi bi^2 + reg_pu |pu|^2 +
    reg_qi |qi|^2 (+ reg_yj sum_{j in N(u)} |yj|^2)`` per rating, so each
    parameter is regularised in proportion to the ratings it takes part in.
    Each gradient row is divided by that count (a diagonal preconditioner),
    so one learning rate suits users with 20 ratings and users with 700;
    adaptive optimizers (Adam, RMSprop) are unaffected by it.

    Parameters
    ----------
    ratings : torch.Tensor
        ``(n_users, n_items)`` ratings on the device and in the dtype to
        train with: dense with a ``mask``, or sparse COO/CSR (stored entries
        are the observed ratings).
    mask : torch.Tensor, optional
        Dense 0/1 mask of the observed entries, for dense ``ratings``.
    n_factors : int, default 100
    n_epochs : int, default 30
        Passes over all ratings; each is one optimizer step. 0 returns the
        initial model.
    biased : bool, default True
        Learn ``mu + bu + bi`` too (Surprise's SVD); False is plain ``pu . qi``.
    implicit : bool, default False
        Add SVD++'s implicit-feedback factors ``yj`` (the items each user rated).
    init_mean, init_std_dev : float
        Normal initialisation of the factors; biases start at 0.
    lr, reg : dict
        Learning rate and regularisation per term, keys ``bu, bi, pu, qi, yj``.
        Missing keys default to 0.1 (both).
    optimizer : str or type, default "adam"
        ``"sgd"``, ``"rmsprop"``, ``"adam"`` or a ``torch.optim.Optimizer``
        subclass, built with one parameter group per term.
    generator : torch.Generator, optional
        CPU generator for the initial factors.
    eval_data : EvalData, optional
        Ratings whose RMSE is recorded after every epoch.
    callback : callable, optional
        ``callback(epoch, metrics)`` after every epoch.
    on_divergence : {"raise", "recover"}, default "raise"
        What to do when training blows up (a NaN or infinite value, or a
        training RMSE far above predicting the mean; see
        :class:`~surprise_torch.trainers._common.DivergenceGuard`): raise, or
        stop and return the last sound state with ``diverged`` set.

    Returns
    -------
    MFModel
        Factors on the training device (``extras["yj"]`` and
        ``extras["implicit_"]`` with ``implicit``), and the per-epoch
        ``history``.

    Raises
    ------
    TrainingDivergedError
        If training blows up and ``on_divergence="raise"``.
    """
    lr = {t: 0.1 for t in _TERMS} | dict(lr or {})
    reg = {t: 0.1 for t in _TERMS} | dict(reg or {})
    opt_cls = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    device, dtype = ratings.device, ratings.dtype
    n_users, n_items = ratings.shape
    k = n_factors
    obs, values = observed_ratings(ratings, mask)
    n_ratings = obs.nnz
    count_u, count_i = obs.counts(dtype)
    mu = float(values.double().mean()) if biased else 0.0
    target = values - mu
    pattern = obs.by_user(torch.ones_like(target))

    # Biases live inside augmented factor matrices, pa = [pu, bu, 1] and
    # qa = [qi, 1, bi], so that one sampled product yields full predictions
    # and the gradient products yield the bias gradients as extra columns.
    width = k + 2 if biased else k
    pa = torch.zeros((n_users, width), device=device, dtype=dtype)
    qa = torch.zeros((n_items, width), device=device, dtype=dtype)
    pa[:, :k] = init_factors(n_users, k, init_mean, init_std_dev, generator, device, dtype)
    qa[:, :k] = init_factors(n_items, k, init_mean, init_std_dev, generator, device, dtype)
    params = {"pu": pa[:, :k], "qi": qa[:, :k]}
    weights = {"pu": count_u, "qi": count_i}
    if biased:
        pa[:, k + 1] = 1
        qa[:, k] = 1
        params["bu"], params["bi"] = pa[:, k], qa[:, k + 1]
        weights["bu"], weights["bi"] = count_u, count_i
    if implicit:
        # |N(u)|^-1/2 as sparse matrices in both directions: the implicit sums
        # of all users, and their gradient back to every yj, are one product each.
        norm_values = safe_counts(count_u).rsqrt().index_select(0, obs.users)
        norm = obs.by_user(norm_values)
        params["yj"] = init_factors(n_items, k, init_mean, init_std_dev, generator, device, dtype)
        # yj is regularised once per rating of every user who rated j.
        weights["yj"] = torch.zeros_like(count_i).index_add_(0, obs.items, count_u.index_select(0, obs.users))
    opt = opt_cls([{"params": [p], "lr": lr[t]} for t, p in params.items()], lr=lr["pu"])
    inv = {t: (1 / safe_counts(w)).reshape(-1, *([1] * (params[t].ndim - 1))) for t, w in weights.items()}
    hint = "Use a smaller learning rate (lr_all or lr_bu/lr_bi/lr_pu/lr_qi/lr_yj) or more regularisation."

    def user_factors():
        return params["pu"] + norm @ params["yj"] if implicit else params["pu"]

    def implicit_sums():
        # In float64, so that the fitted implicit_ is Surprise's formula on the
        # fitted yj to the last digits, whatever the training dtype.
        exact = safe_counts(count_u).double().rsqrt().index_select(0, obs.users)
        return obs.by_user(exact) @ params["yj"].double()

    guard = DivergenceGuard(target, on_divergence, hint)
    history: dict = {}
    kept = None  # the last state whose training RMSE was sound

    def snapshot():
        return [p.detach().clone() for p in (pa, qa, params.get("yj")) if p is not None]

    for epoch in range(1, n_epochs + 1):
        ea = pa
        if implicit:
            ea = pa.clone()
            ea[:, :k] = user_factors()
        # Predictions at the observed entries only (a sampled product), then
        # the gradients as sparse-dense products: no work on empty entries.
        err = torch.sparse.sampled_addmm(pattern, ea, qa.T, beta=0).values() - target
        sse = torch.dot(err, err)
        penalty = sum(reg[t] * (weights[t] @ p.pow(2).reshape(p.shape[0], -1).sum(1)) for t, p in params.items())
        sse, penalty = torch.stack([sse, penalty]).tolist()
        # These metrics describe the state before this epoch's step.
        metrics = {"loss": (sse + penalty) / n_ratings, "train_rmse": (sse / n_ratings) ** 0.5}
        if not guard.sound(epoch, metrics):
            truncate(history, epoch - 2)  # epoch - 1's eval_rmse was of the state now dropped
            break
        kept = snapshot()
        guard.keep(epoch - 1)
        grad_pa = obs.by_user(err) @ qa
        grad_qa = obs.item_product(err, ea)
        grads = {"pu": grad_pa[:, :k], "qi": grad_qa[:, :k]}
        if biased:
            grads["bu"], grads["bi"] = grad_pa[:, k], grad_qa[:, k + 1]
        if implicit:
            grads["yj"] = obs.item_product(norm_values, grad_pa[:, :k])
        for t, p in params.items():
            p.grad = grads[t].mul_(inv[t]).add_(p, alpha=reg[t])
        opt.step()
        if eval_data is not None:
            metrics["eval_rmse"] = eval_rmse(eval_data, mu, user_factors(), params["qi"],
                                             params.get("bu", torch.zeros_like(count_u)),
                                             params.get("bi", torch.zeros_like(count_i)))
            if not guard.sound(epoch, {"eval_rmse": metrics["eval_rmse"]}):
                truncate(history, epoch - 1)
                break
        record(history, epoch, metrics, callback)
    else:
        # The last step's result has not been measured yet.
        ea = torch.cat([user_factors(), pa[:, k:]], 1) if implicit else pa
        err = torch.sparse.sampled_addmm(pattern, ea, qa.T, beta=0).values() - target
        final = {"train_rmse": (float(torch.dot(err, err)) / max(n_ratings, 1)) ** 0.5}
        finite = all(bool(torch.isfinite(p).all()) for p in params.values())
        if not (guard.sound(n_epochs, final) and (finite or guard.fail(n_epochs, "the factors hold NaN or infinity"))):
            truncate(history, n_epochs - 1)
    if guard.diverged is not None:
        _restore(kept, pa, qa, params.get("yj"))
    zeros_u, zeros_i = torch.zeros_like(count_u), torch.zeros_like(count_i)
    return MFModel(mu, params["pu"].clone(), params["qi"].clone(),
                   params.get("bu", zeros_u).clone(), params.get("bi", zeros_i).clone(), history,
                   {"yj": params["yj"].clone(), "implicit_": implicit_sums()} if implicit else {},
                   diverged=guard.report())


def _restore(kept, *tensors):
    """Copy a snapshot back into the live tensors, or zero them (the mean model) without one."""
    live = [t for t in tensors if t is not None]
    with torch.no_grad():
        for i, t in enumerate(live):
            if kept is None:
                t.zero_()
            else:
                t.copy_(kept[i])


def _svd_memory(n_users, n_items, element_size, n_factors=100, implicit=False, **_):
    """Bytes of factors, gradients, two optimizer moments and per-epoch copies."""
    rows = n_users + n_items * (2 if implicit else 1)
    return rows * (n_factors + 2) * element_size * 6


train_svd.memory_bytes = _svd_memory
# The widest per-epoch product: every rating against a (n_factors + 2)-wide factor row.
train_svd.work_per_rating = lambda n_factors=100, **_: n_factors + 2
