"""Matrix factorization trained by gradient descent: Surprise's SVD on PyTorch.

The trainer works on all ratings at once: each epoch is one pass over every
rating, done as three sparse products over the observed entries (a sampled
GEMM for the residuals, then the gradients of both factor matrices) followed
by one optimizer step. This replaces the
per-rating Python/Cython loop with work that BLAS (or a GPU) does at full
speed, and lets any ``torch.optim`` optimizer drive the updates.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import torch

from .._config import check_bool, check_float
from . import _optim
from ._common import (DivergenceGuard, EpochCallback, EvalData, MFModel, aligned_width, all_finite, check_sizes,
                      eval_rmse, check_penalties, init_factors, no_prior, record, safe_counts, truncate, with_prior)
from ._memory import fresh_empty, fresh_zeros
from ._observed import observed_ratings, rating_shape
from ._stack import Stack, centred, fit_list, keep_rows, per_fit, per_row

__all__ = ["train_svd", "train_svd_stacked", "OPTIMIZERS"]

#: Optimizers accepted by name: torch.optim's updates with their default settings, as
#: plain tensor code (see :mod:`._optim` for why); any ``torch.optim.Optimizer`` subclass works too.
OPTIMIZERS = {"sgd": _optim.SGD, "rmsprop": _optim.RMSprop, "adam": _optim.Adam}

_TERMS = ("bu", "bi", "pu", "qi", "yj")


def train_svd(ratings: torch.Tensor, mask: torch.Tensor | None = None, *, n_factors: int = 100, n_epochs: int = 30,
              biased: bool = True, implicit: bool = False, init_mean: float = 0.0,
              init_std_dev: float = 0.1, lr: dict | None = None, reg: dict | None = None,
              prior: dict | None = None, optimizer="adam", generator: torch.Generator | None = None,
              eval_data: EvalData | None = None, callback: EpochCallback | None = None,
              on_divergence: str = "raise", overwrite_ratings: bool = False) -> MFModel:
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
        0 fits the biases alone.
    n_epochs : int, default 30
        Passes over all ratings; each is one optimizer step. 0 returns the
        initial model.
    biased : bool, default True
        Learn ``mu + bu + bi`` too (Surprise's SVD); False is plain ``pu . qi``.
    implicit : bool, default False
        Add SVD++'s implicit-feedback factors ``yj`` (the items each user rated).
    init_mean, init_std_dev : float
        Normal initialisation of the factors; biases start at 0.
    lr, reg : dict or float, optional
        Learning rate and regularisation per term, keys ``bu, bi, pu, qi, yj``
        (missing keys default to 0.1, both), or one value for every term.
        Rates must be positive, regularisation non-negative.
    prior : dict or float, optional
        Ratings' worth of prior per term, as ``reg``'s keys (missing keys
        default to 0), or one value for every term: each row of a term is
        regularised as if it had this many more ratings, ``reg * (n + prior)``
        instead of ``reg * n``. 0 is Surprise's objective. A positive prior
        shrinks rows with a few ratings, which the per-rating penalty barely
        holds (see the README, "Where the defaults do not transfer yet").
        Non-negative. The preconditioner still divides by ``n``.
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
    overwrite_ratings : bool, default False
        Centre the values of a sparse ``ratings`` tensor where they are,
        instead of in a copy: one rating-sized buffer less (ML-10M: 36 MB of
        fresh pages). :func:`~surprise_torch.train_on_arrays` passes True for
        the tensors it builds; the caller must not use ``ratings`` afterwards.

    Returns
    -------
    MFModel
        Factors on the training device (``extras["yj"]`` and
        ``extras["implicit_"]`` with ``implicit``), and the per-epoch
        ``history``.

    Raises
    ------
    ValueError
        For ratings that are not a 2-D floating-point matrix, a mask of
        another shape, or observed ratings that are none, NaN or infinite;
        or a parameter out of its range (named in the message).
    TrainingDivergedError
        If training blows up and ``on_divergence="raise"``.
    """
    return _fit_svd(ratings, mask, Stack.single(*rating_shape(ratings)), n_factors=n_factors, n_epochs=[n_epochs],
                    biased=biased, implicit=implicit, init_mean=init_mean, init_std_dev=init_std_dev, lr=[lr],
                    reg=[reg], prior=[prior], optimizer=optimizer, generators=[generator], eval_data=eval_data,
                    callback=callback, on_divergence=on_divergence, overwrite_ratings=overwrite_ratings)[0]


def train_svd_stacked(ratings: torch.Tensor, mask: torch.Tensor | None = None, *, stack: Stack,
                      n_factors: int = 100, n_epochs=30, biased: bool = True, implicit: bool = False,
                      init_mean: float = 0.0, init_std_dev: float = 0.1, lr=None, reg=None, prior=None,
                      optimizer="adam", generator=None, on_divergence: str = "raise",
                      overwrite_ratings: bool = False) -> list:
    """Fit several independent SVD (or SVD++) models at once, stacked block-diagonally.

    ``ratings`` holds every fit's ratings in its own diagonal block (see
    :class:`~surprise_torch.trainers._stack.Stack`); each epoch is one set of
    products for all of them. Fit ``b`` ends equal, up to float rounding,
    to :func:`train_svd` on its block alone with its own ``n_epochs``, ``lr``,
    ``reg``, ``prior`` and ``generator``: its own global mean, initial
    factors, learning rates, divergence guard and number of epochs (a fit
    with fewer epochs keeps its state after them while the others go on).

    Parameters
    ----------
    ratings, mask : torch.Tensor
        The stacked ``(n_users, n_items)`` ratings, as for :func:`train_svd`;
        no rating may lie outside the diagonal blocks.
    stack : Stack
        Each fit's user and item rows.
    n_epochs : int or list of int
        Epochs of every fit, or of each.
    lr, reg, prior : dict or list of dict, optional
        As for :func:`train_svd`, for every fit or for each. Learning rates
        that differ between fits need one of the named optimizers.
    generator : torch.Generator or list of torch.Generator, optional
        One generator per fit for the initial factors (one shared generator
        draws each fit's factors in turn).
    n_factors, biased, implicit, init_mean, init_std_dev, optimizer, on_divergence, overwrite_ratings
        As for :func:`train_svd`, shared by every fit.

    Returns
    -------
    list of MFModel
        One per fit, its factors on the training device; a fit that blew up
        reports it in its own ``diverged`` and returns its last sound state.
    """
    n = stack.n_fits
    return _fit_svd(ratings, mask, stack, n_factors=n_factors, n_epochs=fit_list(n_epochs, n, "n_epochs"),
                    biased=biased, implicit=implicit, init_mean=init_mean, init_std_dev=init_std_dev,
                    lr=fit_list(lr, n, "lr"), reg=fit_list(reg, n, "reg"), prior=fit_list(prior, n, "prior"),
                    optimizer=optimizer, generators=fit_list(generator, n, "generator"), eval_data=None,
                    callback=None, on_divergence=on_divergence, overwrite_ratings=overwrite_ratings)


def _fit_svd(ratings, mask, stack, *, n_factors, n_epochs, biased, implicit, init_mean, init_std_dev, lr, reg,
             prior, optimizer, generators, eval_data, callback, on_divergence, overwrite_ratings=False):
    """The SVD trainer for ``stack.n_fits`` stacked fits (one for :func:`train_svd`); per-fit lists of
    ``n_epochs``, ``lr``, ``reg``, ``prior`` and ``generators``."""
    n_factors, n_epochs = check_sizes(n_factors, n_epochs)
    biased, implicit = check_bool("biased", biased), check_bool("implicit", implicit)
    init_mean = check_float("init_mean", init_mean, minimum=float("-inf"))
    init_std_dev = check_float("init_std_dev", init_std_dev)
    lr = [_per_term("lr", rates, strict=True) for rates in lr]
    reg = [_per_term("reg", rates, strict=False) for rates in reg]
    prior = [_per_term("prior", values, strict=False, default=0.0) for values in prior]
    optimizer = check_optimizer(optimizer)
    opt_cls = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    device, dtype = ratings.device, ratings.dtype
    n_users, n_items = rating_shape(ratings)
    stack.check(ratings.shape)
    k = n_factors
    obs, values = observed_ratings(ratings, mask)
    fits = range(stack.n_fits)
    n_u, n_i, n_r = stack.lengths("users"), stack.lengths("items"), stack.rating_lengths(obs.user_crow)
    mus, target = centred(values, n_r, biased, inplace=overwrite_ratings)
    # The residuals come out of one sampled product, predictions - target at the observed entries.
    target_csr = obs.by_user(target)

    # Biases live inside augmented factor matrices, pa = [pu, bu, 1] and
    # qa = [qi, 1, bi], so that one sampled product yields full predictions
    # and the gradient products yield the bias gradients as extra columns.
    # Zero columns pad the rows to aligned words (see aligned_width); their
    # gradients are zero, so they stay zero.
    width = aligned_width(k + 2 if biased else k, values.element_size())
    pa = fresh_zeros((n_users, width), device=device, dtype=dtype)
    qa = fresh_zeros((n_items, width), device=device, dtype=dtype)

    def draw():
        for b in fits:
            # Each fit draws from its own generator in a lone fit's order: pu, qi, then yj.
            init_factors(n_u[b], k, init_mean, init_std_dev, generators[b], device, dtype,
                         out=stack.select(pa, "users", b)[:, :k])
            init_factors(n_i[b], k, init_mean, init_std_dev, generators[b], device, dtype,
                         out=stack.select(qa, "items", b)[:, :k])

    # The draws are one stream of random numbers, on one core: the item side's tiles (for products with
    # rows of pa) are cut on the others meanwhile. ML-10M, medians of six processes: 89 ms for both in a
    # process's first fit, 70 in its next, against about 30 ms of draws and then a 60-140 ms cut.
    obs.prepare_item_product(pa, alongside=[draw])
    count_u, count_i = obs.counts(dtype)  # after the cut, whose tiles count the items' ratings
    params = {"pu": pa[:, :k], "qi": qa[:, :k]}
    weights = {"pu": count_u, "qi": count_i}
    rows = {"pu": n_u, "bu": n_u, "qi": n_i, "bi": n_i, "yj": n_i}
    if biased:
        pa[:, k + 1] = 1
        qa[:, k] = 1
        params["bu"], params["bi"] = pa[:, k], qa[:, k + 1]
        weights["bu"], weights["bi"] = count_u, count_i
    if implicit:
        # |N(u)|^-1/2 at each rating: the implicit sums of all users, and their
        # gradient back to every yj, are one product each.
        norm_values = safe_counts(count_u).rsqrt().index_select(0, obs.users)
        params["yj"] = torch.cat([init_factors(n_i[b], k, init_mean, init_std_dev, generators[b], device, dtype)
                                  for b in fits])
        # yj is regularised once per rating of every user who rated j.
        weights["yj"] = torch.zeros_like(count_i).index_add_(0, obs.items, count_u.index_select(0, obs.users))
    largest = dict(zip(weights, torch.stack([w.max() for w in weights.values()]).tolist()))  # one host sync
    check_penalties(dtype, [(f"reg[{t!r}] and prior[{t!r}]", max(f[t] for f in reg), max(f[t] for f in prior),
                             max(largest[t], 1.0)) for t in params])
    # One learning rate and regularisation per fit, as floats when the fits share them, else per row.
    rates = {t: _column(per_row([f[t] for f in lr], rows[t], target), p) for t, p in params.items()}
    reg_rows = {t: per_row([f[t] for f in reg], rows[t], target) for t in params}
    prior_rows = {t: per_row([f[t] for f in prior], rows[t], target) for t in params}
    if not isinstance(optimizer, str) and any(isinstance(r, torch.Tensor) for r in rates.values()):
        raise ValueError("Stacked fits with different learning rates need a named optimizer "
                         f"({sorted(OPTIMIZERS)}), not {optimizer!r}.")
    # Where each fit gives both terms of a table one rate (Surprise's lr_all), the named optimizers step
    # whole rows of pa and qa, a block per fit: contiguous tensors with a float rate, which Adam updates
    # in one fused pass (the constant columns get zero gradients and stay 1).
    blocks = None
    if isinstance(optimizer, str):
        terms = {"users": ("pu", "bu") if biased else ("pu",), "items": ("qi", "bi") if biased else ("qi",)}
        blocks = {side: _blocks(lr, terms[side], stack.users if side == "users" else stack.items) for side in terms}
        blocks = None if None in blocks.values() else blocks
    if blocks is None:
        groups = [{"params": [p], "lr": rates[t]} for t, p in params.items()]
    else:
        groups = [{"params": [table[start:end]], "lr": rate}
                  for table, side in ((pa, "users"), (qa, "items")) for start, end, rate in blocks[side]]
        groups += [{"params": [params["yj"]], "lr": rates["yj"]}] if implicit else []
    opt = opt_cls(groups, lr=groups[0]["lr"])
    # Gradients divided by each row's count (the preconditioner). A table's gradient is
    # (its product + table * reg * count) / count: started from the penalty in one pass, the product added
    # into it, divided in one more (per term, on strided columns, the same took four passes).
    inv = {t: (1 / safe_counts(weights[t]))[:, None] for t in ("pu", "qi", "yj") if t in params}
    if implicit:
        # yj's penalty, reg * (count + prior), over its count: reg alone without a prior.
        yj_decay = reg_rows["yj"] if no_prior(prior_rows["yj"]) else \
            reg_rows["yj"] * with_prior(safe_counts(weights["yj"]), prior_rows["yj"]) * inv["yj"][:, 0]
    columns = {"pu": slice(0, k), "bu": k, "qi": slice(0, k), "bi": k + 1}
    scale = {side: _penalty_scale([reg_rows[t] for t in terms], [prior_rows[t] for t in terms],
                                  [columns[t] for t in terms], safe_counts(count), width)
             for side, terms, count in (("users", [t for t in ("pu", "bu") if t in params], count_u),
                                        ("items", [t for t in ("qi", "bi") if t in params], count_i))}
    hint = "Use a smaller learning rate (lr_all or lr_bu/lr_bi/lr_pu/lr_qi/lr_yj) or more regularisation."

    def user_factors():
        return obs.user_product(norm_values, params["yj"]).add_(params["pu"]) if implicit else params["pu"]

    # The sampled product writes into one kept result, sharing the pattern's index: allocating (and
    # cloning the pattern into) a new one every epoch cost a fifth of the product at ML-10M's size, the
    # subtraction another tenth.
    residuals = obs.by_user(fresh_empty(like=target))
    item_grad = fresh_empty(like=qa)
    if implicit:
        # SVD++: yj's item product reorders its values while the users' gradient is live; no sharing.
        user_grad, scratch = fresh_empty(like=pa), None
    else:
        # One buffer serves twice an epoch: the item side's reordered residuals, then (the item product
        # runs first) the users' gradient. ML-10M: 29 MB less memory, 7,000 fewer fresh pages a first epoch.
        scratch = fresh_empty(max(obs.nnz, pa.numel()), device=device, dtype=dtype)
        user_grad = scratch[:pa.numel()].view_as(pa)
    # The loss's weight of each row's squared norm, reg * (count + prior): the same every epoch.
    penalty_weights = {t: reg_rows[t] * with_prior(weights[t], prior_rows[t]) for t in params}

    def measure():
        """Each fit's residuals and, as lists (one host sync for all fits), loss and training RMSE now.

        The residuals live in ``residuals`` until the next call.
        """
        ea = torch.cat([user_factors(), pa[:, k:]], 1) if implicit else pa
        err = torch.sparse.sampled_addmm(target_csr, ea, qa.T, beta=-1, out=residuals).values()
        # Each row's sum of squares as its squared norm: a reduction with no product tensor (vecdot, like
        # (p * p).sum(1), multiplies into one first: 2.3 against 0.5 ms for ML-10M's user factors).
        penalty = sum(per_fit(penalty_weights[t] * _row_norms(p).square_(), rows[t]) for t, p in params.items())
        sse, penalty = torch.stack([per_fit(err, n_r, square=True), penalty]).tolist()
        metrics = [{"loss": (s + q) / max(m, 1), "train_rmse": (s / max(m, 1)) ** 0.5}
                   for s, q, m in zip(sse, penalty, n_r)]
        return err, ea, metrics

    guards = [DivergenceGuard(part, on_divergence, hint) for part in target.split(n_r)]
    histories = [{} for _ in fits]
    live = [t for t in (pa, qa, params.get("yj")) if t is not None]
    sides = ["users", "items", "items"]
    # Each fit's last sound state; written at the first judgement (zeros, the mean model, if none is sound).
    kept = [fresh_empty(like=t) for t in live]
    running = set(fits)
    for epoch in range(1, max(n_epochs) + 2):
        err, ea, metrics = measure()
        stepping, sound = [], []
        for b in sorted(running):
            if epoch > n_epochs[b]:
                # The fit's epochs are over: judge the state its last step left.
                running.discard(b)
                final = {"train_rmse": metrics[b]["train_rmse"]}
                finite = all(all_finite(stack.select(t, side, b)) for t, side in zip(live, sides))
                if guards[b].sound(n_epochs[b], final) and (finite or guards[b].fail(
                        n_epochs[b], "the factors hold NaN or infinity")):
                    sound.append(b)
                else:
                    truncate(histories[b], n_epochs[b] - 1)
            elif guards[b].sound(epoch, metrics[b]):
                # These metrics describe the state before this epoch's step.
                guards[b].keep(epoch - 1)
                sound.append(b)
                stepping.append(b)
            else:
                running.discard(b)
                truncate(histories[b], epoch - 2)  # epoch - 1's eval_rmse was of the state now dropped
        keep_rows(kept, live, sides, stack, sound, first=epoch == 1)
        if not stepping:
            break
        # Predictions at the observed entries only (a sampled product), then
        # the gradients as sparse-dense products: no work on empty entries.
        # Into kept buffers, as the item side's reordered values (a fresh result faults in new pages).
        # The item side first: its reordered residuals are dead before the users' gradient takes their memory.
        grad_qa = obs.item_product(err, ea, out=torch.mul(qa, scale["items"], out=item_grad), add=True,
                                   scratch=scratch)
        grad_qa.mul_(inv["qi"])
        if implicit:
            # yj's gradient takes the users' factor gradients before their penalty.
            grad_pa = obs.user_product(err, qa, out=user_grad)
            yj_grad = obs.item_product(norm_values, grad_pa[:, :k]).mul_(inv["yj"])
            _add_penalty(yj_grad, params["yj"], _column(yj_decay, params["yj"]))
            params["yj"].grad = yj_grad
            grad_pa.addcmul_(pa, scale["users"])
        else:
            grad_pa = obs.user_product(err, qa, out=torch.mul(pa, scale["users"], out=user_grad), add=True)
        grad_pa.mul_(inv["pu"])
        if blocks is None:
            for t, p in params.items():
                if t != "yj":
                    p.grad = grad_pa[:, columns[t]] if t in ("pu", "bu") else grad_qa[:, columns[t]]
        if blocks is not None:
            if biased:
                grad_pa[:, k + 1], grad_qa[:, k] = 0, 0
            tables = [grad_pa] * len(blocks["users"]) + [grad_qa] * len(blocks["items"])
            for group, grad, (start, end, _) in zip(opt.param_groups, tables, blocks["users"] + blocks["items"]):
                group["params"][0].grad = grad[start:end]
        opt.step()
        if eval_data is not None:  # a lone fit (train_svd)
            metrics[0]["eval_rmse"] = eval_rmse(eval_data, mus[0], user_factors(), params["qi"],
                                                params.get("bu", torch.zeros_like(count_u)),
                                                params.get("bi", torch.zeros_like(count_i)))
            if not guards[0].sound(epoch, {"eval_rmse": metrics[0]["eval_rmse"]}):
                running.discard(0)
                truncate(histories[0], epoch - 1)
                break
        for b in stepping:
            record(histories[b], epoch, metrics[b], callback)
    models = []
    for b in fits:
        pa_b, qa_b = stack.select(kept[0], "users", b), stack.select(kept[1], "items", b)
        zeros_u, zeros_i = pa_b.new_zeros(n_u[b]), qa_b.new_zeros(n_i[b])
        extras = {}
        if implicit:
            yj_b = stack.select(kept[2], "items", b)
            extras = {"yj": yj_b.clone(), "implicit_": _implicit_sums(obs, count_u, kept[2], stack, b)}
        models.append(MFModel(mus[b], pa_b[:, :k].clone(), qa_b[:, :k].clone(),
                              pa_b[:, k].clone() if biased else zeros_u, qa_b[:, k + 1].clone() if biased else zeros_i,
                              histories[b], extras, diverged=guards[b].report()))
    return models


def check_optimizer(value):
    """``value`` if it names one of :data:`OPTIMIZERS` or is a ``torch.optim.Optimizer`` subclass; else
    ``ValueError``."""
    if (value in OPTIMIZERS if isinstance(value, str)
            else isinstance(value, type) and issubclass(value, torch.optim.Optimizer)):
        return value
    raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or a torch.optim.Optimizer subclass, "
                     f"got {value!r}.")


def _per_term(name: str, values, strict: bool, default: float = 0.1) -> dict:
    """``lr``, ``reg`` or ``prior`` as a value per term: a dict over :data:`_TERMS` (a missing term takes
    ``default``), or one number for every term; each value finite and positive (``strict``) or non-negative.

    A misspelt term is refused: it would otherwise leave that term at its default without a word.
    """
    if values is None:
        values = {}
    elif isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = dict.fromkeys(_TERMS, values)
    elif not isinstance(values, Mapping):
        raise ValueError(f"{name} must be a dict of per-term values (keys {', '.join(_TERMS)}) or one number, "
                         f"got {values!r}.")
    unknown = sorted(map(str, set(values) - set(_TERMS)))
    if unknown:
        raise ValueError(f"{name} has no term {', '.join(map(repr, unknown))}; its keys are {', '.join(_TERMS)}.")
    return {t: default for t in _TERMS} | {t: check_float(f"{name}[{t!r}]", v, strict=strict)
                                           for t, v in values.items()}


def _blocks(lr, terms, offsets):
    """Each fit's rows ``[start, end)`` and the one rate its ``terms`` share; None if some fit's differ.

    One block per fit, never merged with its neighbours': a fused update's rounding depends on where
    an element falls in its tensor, and a fit stepped on its own block steps as it would alone.
    """
    blocks = []
    for b, rates in enumerate(lr):
        values = {float(rates[t]) for t in terms}
        if len(values) != 1:
            return None
        blocks.append((offsets[b], offsets[b + 1], values.pop()))
    return blocks


def _penalty_scale(regs, priors, columns, counts, width):
    """``reg * (count + prior)`` for each entry of a factor table, its terms' ``regs`` and ``priors`` (floats
    or one per row) in ``columns``.

    ``(n, 1)`` when the terms share both (Surprise's ``reg_all``), which
    also scales the table's constant and padding columns: their gradients
    are not used, or zero. Otherwise ``(n, width)``, zero outside the terms'
    columns.
    """
    if all(_same(reg, regs[0]) for reg in regs) and all(_same(prior, priors[0]) for prior in priors):
        return (with_prior(counts, priors[0]) * regs[0])[:, None]
    scale = counts.new_zeros((counts.shape[0], width))
    for reg, prior, column in zip(regs, priors, columns):
        value = with_prior(counts, prior) * reg
        scale[:, column] = value[:, None] if isinstance(column, slice) else value
    return scale


def _same(a, b) -> bool:
    """Whether two regularisations or priors (floats, or tensors of one per row) are equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def _add_penalty(grad, param, decay):
    """``grad += decay * param``, ``decay`` a float or per-row column."""
    return grad.addcmul_(param, decay) if isinstance(decay, torch.Tensor) else grad.add_(param, alpha=decay)


def _row_norms(param):
    """Each row's Euclidean norm (a bias vector's entries' absolute values)."""
    return torch.linalg.vector_norm(param.reshape(param.shape[0], -1), dim=1)


def _column(rate, param):
    """A per-row rate shaped to broadcast against ``param`` (a float stays a float)."""
    if isinstance(rate, torch.Tensor) and param.ndim == 2:
        return rate[:, None]
    return rate


def _implicit_sums(obs, count_u, yj, stack, fit):
    """Fit ``fit``'s users' implicit sums, in float64 so that the fitted ``implicit_`` is
    Surprise's formula on the fitted ``yj`` to the last digits, whatever the training dtype."""
    exact = safe_counts(count_u).double().rsqrt().index_select(0, obs.users)
    return stack.select(obs.by_user(exact) @ yj.double(), "users", fit)


def _svd_memory(n_users, n_items, element_size, n_factors=100, implicit=False, **_):
    """Bytes of factors, gradients, two optimizer moments, per-epoch copies and penalty scales, rows padded."""
    rows = n_users + n_items * (2 if implicit else 1)
    return rows * aligned_width(n_factors + 2, element_size) * element_size * 7


train_svd.memory_bytes = _svd_memory
# The widest per-epoch product: every rating against a (n_factors + 2)-wide factor row.
train_svd.work_per_rating = lambda n_factors=100, **_: n_factors + 2  # unpadded: the threshold was measured so
# Model selection stacks many fits of one trainer into one program (see ._stack).
train_svd.stacked = train_svd_stacked
