"""Bayesian matrix factorization by Gibbs sampling, on ALS's batched normal equations.

The model (Salakhutdinov and Mnih's BPMF, with libFM's per-dimension
Normal-Gamma hyperpriors), on the standardised ratings the layer above hands
every trainer::

    r_ui ~ N(mu + bu + bi + pu . qi, 1 / alpha)
    [pu, bu] ~ N(m_U, diag(1 / lam_U)),        [qi, bi] ~ N(m_I, diag(1 / lam_I))
    lam_f ~ Gamma(a0, b0),  m_f | lam_f ~ N(0, 1 / (g0 lam_f))     (each dimension f of each side)
    alpha ~ Gamma(a0, b0)

with ``mu`` the ratings' mean, as in Surprise's SVD. Each sweep draws every
user's ``[pu, bu]`` from its Gaussian conditional, then the users'
hyperparameters, then every item's ``[qi, bi]`` and the items'
hyperparameters, then the noise precision ``alpha``. The
priors learn the regularisation and the noise, so there is nothing to tune.

A user's conditional has precision ``alpha (F^T F + diag(lam) / alpha)``,
with ``F`` the features ``[qi, 1]`` of the items it rated: the normal
equations TorchALS solves, with the penalty ``lam / alpha``. Each draw is
one ALS solve (:class:`~surprise_torch.trainers.als._Side`, its batched
Gram matrices and Cholesky factorizations, kernel form for short rows) by
perturbation (Papandreou and Yuille, 2010): with ``x0`` drawn from the
prior and every rating perturbed by ``N(0, 1/alpha)`` noise, the
regularised least-squares solution toward ``x0`` is an exact draw from the
conditional. So the sampler shares every speed-up of ALS, on any device.

Predictions are the posterior predictive mean over the kept sweeps' samples.
The mean of the samples' dot products is not the dot product of their mean
factors, so the model keeps the samples too: ``extras["pu_samples_"]`` and
``extras["qi_samples_"]`` hold them side by side, scaled by
``1 / sqrt(n_samples)``, so that their rows' dot product is that mean and
Surprise's SVD formula on them gives the posterior predictive mean.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._config import check_bool, check_float, check_int
from ._common import (DivergenceGuard, EpochCallback, EvalData, MFModel, estimates_rmse, eval_estimates,
                      init_factors, record, sum64)
from ._observed import observed_ratings
from .als import _als_memory, _Exchange, _Side

__all__ = ["train_bayes_mf"]


def train_bayes_mf(ratings: torch.Tensor, mask: torch.Tensor | None = None, *, n_factors: int = 10,
                   n_epochs: int = 200, burn_in: int = 10, thinning: int | None = None, max_samples: int = 200,
                   biased: bool = True, init_std_dev: float = 0.1, prior_shape: float = 0.5,
                   prior_rate: float = 0.5, prior_strength: float = 1.0, generator: torch.Generator | None = None,
                   eval_data: EvalData | None = None, callback: EpochCallback | None = None,
                   on_divergence: str = "raise") -> MFModel:
    """Sample a Bayesian matrix factorization and return its posterior predictive mean.

    Parameters
    ----------
    ratings, mask : torch.Tensor
        As for :func:`~surprise_torch.train_als`; best standardised (mean 0,
        spread 1), as :func:`~surprise_torch.train_on_arrays` hands them.
    n_factors : int, default 10
        0 samples the biases alone.
    n_epochs : int, default 200
        Gibbs sweeps in all, burn-in included.
    burn_in : int, default 10
        Sweeps whose samples are not kept; must be below ``n_epochs``.
    thinning : int, optional
        Keep every ``thinning``-th sample after the burn-in. None takes the
        smallest value that keeps at most ``max_samples``.
    max_samples : int, default 200
        The most samples kept: what predictions average over, and what the
        returned ``pu``/``qi`` hold side by side.
    biased : bool, default True
        Sample ``mu + bu + bi`` too.
    init_std_dev : float, default 0.1
        Normal initialisation of the factors; the hyperparameters start as
        that distribution, ``N(0, init_std_dev^2)``.
    prior_shape, prior_rate : float, default 0.5, 0.5
        ``a0`` and ``b0`` of the Gamma hyperpriors on every precision:
        libFM's (its ``alpha_0 = beta_0 = 1`` in its ``(alpha_0 + n) / 2``
        parametrisation). ML-100K: 0.8940 against 0.8952 with 1, 1.
    prior_strength : float, default 1
        ``g0``: how many pseudo-observations the hyperprior's mean of 0 is worth.
    generator : torch.Generator, optional
        CPU generator: the initial factors, and the seeds of every later draw.
    eval_data : EvalData, optional
        Ratings whose RMSE, of the running posterior mean, is recorded after every sweep.
    callback : callable, optional
        ``callback(epoch, metrics)`` after every sweep.
    on_divergence : {"raise", "recover"}, default "raise"
        When a sweep produces NaN or a training RMSE far above predicting
        the mean: raise, or stop and return the samples kept so far (the
        mean model if none).

    Returns
    -------
    MFModel
        ``pu``, ``qi``, ``bu`` and ``bi``: the means of the kept samples;
        ``global_mean`` the ratings' mean. ``extras["pu_samples_"]`` ``(n_users, n_samples *
        n_factors)`` and ``extras["qi_samples_"]``: the kept factor samples
        side by side, scaled by ``1 / sqrt(n_samples)``; predict with them
        (``mu + bu + bi + pu_samples_ . qi_samples_``). ``history``
        per sweep: ``train_rmse`` (the current sample), ``train_rmse_mean``
        (the running posterior mean: the mean of the samples kept so far,
        the current sample before the first), ``noise_std`` (``alpha^-1/2``)
        and, with ``eval_data``, ``eval_rmse`` (the running posterior mean).

    Raises
    ------
    ValueError
        If ``burn_in`` is not below ``n_epochs``, ``thinning`` would keep
        more than ``max_samples`` samples, for ratings that are not a 2-D
        floating-point matrix, a mask of another shape, or observed ratings
        that are none, NaN or infinite; or a parameter out of its range
        (named in the message).
    TrainingDivergedError
        If a sweep blows up and ``on_divergence="raise"``.
    """
    n_epochs, burn_in, thinning = sampling_plan(n_epochs, burn_in, thinning, max_samples)
    k = check_int("n_factors", n_factors, minimum=0)
    biased = check_bool("biased", biased)
    init_std_dev = check_float("init_std_dev", init_std_dev)
    prior_shape, prior_rate, prior_strength = (check_float(name, value, strict=True) for name, value in (
        ("prior_shape", prior_shape), ("prior_rate", prior_rate), ("prior_strength", prior_strength)))
    device, dtype = ratings.device, ratings.dtype
    d = k + 1 if biased else k
    obs, values = observed_ratings(ratings, mask)
    n_users, n_items = obs.shape
    n = obs.nnz
    alone = _Exchange(None)
    users, items = _Side.of_users(obs, values, alone, d), _Side.of_items(obs, values, alone, d)
    pu = init_factors(n_users, k, 0.0, init_std_dev, generator, device, dtype)
    qi = init_factors(n_items, k, 0.0, init_std_dev, generator, device, dtype)
    # Every later draw comes from two generators seeded by this one: torch's
    # on the device for the large draws, NumPy's for the few hyperparameters.
    seeds = torch.randint(0, 2 ** 62, (2,), generator=generator).tolist()
    noise = torch.Generator(device=device).manual_seed(seeds[0])
    host = np.random.default_rng(seeds[1])
    prior = _Hyperprior(prior_shape, prior_rate, prior_strength, host)
    ones_u = torch.ones((n_users, 1), device=device, dtype=dtype)
    ones_i = torch.ones((n_items, 1), device=device, dtype=dtype)
    bu = torch.zeros(n_users, device=device, dtype=dtype)
    bi = torch.zeros(n_items, device=device, dtype=dtype)
    # As in Surprise's SVD, mu is the ratings' mean (what an unknown user and item get); the
    # biases' hyperprior means take up any offset.
    mean = sum64(values) / n
    mu = mean if biased else 0.0
    # The noise precision starts at the ratings' own; ratings that all equal their mean have none, and
    # 1 / 1e-12 made the first sweep's solves singular (NaN): they start at the standardised unit instead.
    variance = sum64(values, mean, square=True) / (n - 1) if n > 1 else 0.0
    alpha = 1.0 / variance if variance > 0 else 1.0
    # The hyperparameters start as the prior the initial factors were drawn from, N(0, init_std_dev^2): the
    # first sweeps then grow the factors from small values, as a coordinate-wise sampler started there does.
    # Starting from a unit prior instead left the chain far from its stationary state for many sweeps
    # (ML-100K fold 1: 0.8948 against 0.8938 at rank 10, 0.9000 against 0.8962 at rank 20).
    start = init_std_dev ** -2 if init_std_dev > 0 else 1.0
    hyper_u = hyper_i = (torch.zeros(d, device=device, dtype=dtype),
                         torch.full((d,), start, device=device, dtype=dtype))

    def draw(side, features, offset, mean, precision):
        return draw_rows(side, features, offset, mean, precision, alpha, noise)

    # On a handful of ratings the hyperpriors have almost nothing to go on, and a sample's RMSE
    # wanders far from the data by chance (10 ratings: 16x its spread at worst in 30 seeds; 50: 1.3x).
    guard = DivergenceGuard(values - mean, on_divergence,
                            "Check the ratings for extreme values, or use dtype='float64'. On a few dozen "
                            "ratings or fewer the draws also wander far by chance: train on more.")
    history: dict = {}
    kept_pu, kept_qi = [], []
    sums = {"bu": torch.zeros_like(bu), "bi": torch.zeros_like(bi), "train": torch.zeros_like(values), "eval": None}
    for epoch in range(1, n_epochs + 1):
        if biased:
            x_u = draw(users, torch.cat([qi, ones_i], 1), bi + mu, *hyper_u)
            pu, bu = x_u[:, :k], x_u[:, k]
            hyper_u = prior.draw(x_u)
            x_i = draw(items, torch.cat([pu, ones_u], 1), bu + mu, *hyper_i)
            qi, bi = x_i[:, :k], x_i[:, k]
            hyper_i = prior.draw(x_i)
            prediction = users.dots(torch.cat([pu, bu[:, None], ones_u], 1),
                                    torch.cat([qi, ones_i, bi[:, None]], 1)) + mu
        else:
            pu = draw(users, qi, None, *hyper_u)
            hyper_u = prior.draw(pu)
            qi = draw(items, pu, None, *hyper_i)
            hyper_i = prior.draw(qi)
            prediction = users.dots(pu, qi)
        error = values - prediction
        sse = sum64(error, square=True)
        alpha = host.gamma(prior_shape + n / 2, 1.0 / (prior_rate + sse / 2))
        metrics = {"train_rmse": math.sqrt(sse / n), "noise_std": alpha ** -0.5}
        keep = epoch > burn_in and (epoch - burn_in) % thinning == 0
        current_eval = eval_estimates(eval_data, mu, pu, qi, bu, bi) if eval_data is not None else None
        if keep:
            kept_pu.append(pu.clone())
            kept_qi.append(qi.clone())
            sums["bu"] += bu
            sums["bi"] += bi
            sums["train"] += prediction
            if current_eval is not None:
                sums["eval"] = current_eval if sums["eval"] is None else sums["eval"] + current_eval
        count = len(kept_pu)
        mean_prediction = sums["train"] / count if count else prediction
        metrics["train_rmse_mean"] = (sum64(values - mean_prediction, square=True) / n) ** 0.5
        if eval_data is not None and eval_data.users.numel():
            metrics["eval_rmse"] = estimates_rmse(eval_data, sums["eval"] / count if count else current_eval)
        if not guard.sound(epoch, metrics):
            if keep:  # the sample just kept is the unsound one
                kept_pu.pop(), kept_qi.pop()
                sums["bu"] -= bu
                sums["bi"] -= bi
            break
        record(history, epoch, metrics, callback)
    count = len(kept_pu)
    if count == 0:
        # Nothing sound was kept: the model that predicts the mean.
        zeros_u, zeros_i = pu.new_zeros((n_users, k)), qi.new_zeros((n_items, k))
        return MFModel(mu, zeros_u, zeros_i, bu.new_zeros(n_users), bi.new_zeros(n_items), history,
                       {"pu_samples_": zeros_u, "qi_samples_": zeros_i}, diverged=guard.report())
    scale = count ** -0.5
    samples = {"pu_samples_": torch.cat(kept_pu, 1) * scale, "qi_samples_": torch.cat(kept_qi, 1) * scale}
    return MFModel(mu, sum(kept_pu) / count, sum(kept_qi) / count, sums["bu"] / count,
                   sums["bi"] / count, history, samples, diverged=guard.report())


def draw_rows(side: _Side, features: torch.Tensor, offset, mean: torch.Tensor, precision: torch.Tensor,
              alpha: float, noise: torch.Generator) -> torch.Tensor:
    """Draw every row of ``side`` from its Gaussian conditional, exactly, by perturbation.

    Row ``r`` fits ``y_r = target - offset[cols]`` with features ``F_r``,
    noise precision ``alpha`` and prior ``N(mean, diag(1 / precision))``:
    its conditional is ``N(S (alpha F_r^T y_r + precision * mean), S)``,
    ``S = (alpha F_r^T F_r + diag(precision))^-1``. With ``x0`` drawn from the
    prior and ``y_r`` perturbed by ``N(0, 1/alpha)`` noise, the ridge solution
    toward ``x0``, ``x0 + (F^T F + diag(precision)/alpha)^-1 F^T (y + e - F x0)``,
    is such a draw; the ridge solve is ALS's (Gram or kernel form).
    """
    rows, d = side.shape[0], mean.shape[0]
    x0 = mean + torch.randn((rows, d), generator=noise, device=mean.device, dtype=mean.dtype) * precision.rsqrt()
    shake = torch.randn(side.target.shape, generator=noise, device=mean.device, dtype=mean.dtype) / math.sqrt(alpha)
    delta, _, _ = side.solve(features, offset, (precision / alpha).expand(rows, d),
                             adjust=shake - side.dots(x0, features))
    return x0 + delta


def sampling_plan(n_epochs: int, burn_in: int, thinning: int | None, max_samples: int) -> tuple:
    """The sweeps to run and keep: samples after ``burn_in`` of ``n_epochs``, at most ``max_samples`` of them.

    Returns
    -------
    tuple of int
        ``(n_epochs, burn_in, thinning)``, checked; ``thinning`` the one given
        or, for None, the smallest that keeps at most ``max_samples``.

    Raises
    ------
    ValueError
        If a count is not an integer in its range (``n_epochs``,
        ``thinning``, ``max_samples`` >= 1; ``burn_in`` >= 0), no sample
        would be kept, or an explicit ``thinning`` keeps too many.
    """
    n_epochs, burn_in = check_int("n_epochs", n_epochs), check_int("burn_in", burn_in, minimum=0)
    thinning = None if thinning is None else check_int("thinning", thinning)
    max_samples = check_int("max_samples", max_samples)
    after = n_epochs - burn_in
    if after < 1:
        raise ValueError(f"burn_in ({burn_in}) must be below n_epochs ({n_epochs}): no sample would be kept.")
    if thinning is None:
        return n_epochs, burn_in, max(1, -(-after // max_samples))
    if after // thinning > max_samples:
        raise ValueError(f"thinning={thinning} keeps {after // thinning} samples of the {after} after the burn-in, "
                         f"more than max_samples={max_samples}; raise thinning or max_samples.")
    if after // thinning < 1:
        raise ValueError(f"thinning={thinning} keeps no sample of the {after} after the burn-in; lower it.")
    return n_epochs, burn_in, thinning


class _Hyperprior:
    """Per-dimension Normal-Gamma hyperprior of one side's rows: draws ``(mean, precision)`` given the rows.

    Prior ``lam_f ~ Gamma(a0, b0)`` (rate ``b0``), ``m_f | lam_f ~ N(0, 1 / (g0 lam_f))``; the
    conditional given ``N`` rows is Normal-Gamma again, drawn exactly (``lam`` then ``m``).
    """

    def __init__(self, shape, rate, strength, rng):
        self.shape, self.rate, self.strength, self.rng = shape, rate, strength, rng

    def draw(self, rows: torch.Tensor):
        n = rows.shape[0]
        values = rows.double()
        mean = values.mean(0)
        spread = (values - mean).pow(2).sum(0)
        strength = self.strength + n
        centre = (values.sum(0) / strength).cpu().numpy()
        rate = self.rate + 0.5 * (spread + self.strength * n * mean.pow(2) / strength).cpu().numpy()
        precision = self.rng.gamma(self.shape + n / 2, 1.0 / rate)
        location = centre + self.rng.standard_normal(len(rate)) / np.sqrt(strength * precision)
        return (torch.as_tensor(location, dtype=rows.dtype, device=rows.device),
                torch.as_tensor(precision, dtype=rows.dtype, device=rows.device))


def _bayes_memory(n_users, n_items, element_size, n_factors=10, n_ratings=0, max_samples=200, **_):
    """ALS's bytes, the kept samples, and a few per-rating vectors (noise, fitted values, running sums).

    The samples count twice: as trained, and as the float64 copy the fit
    hands back (see :meth:`~surprise_torch.arrays.RatingScale.restore`),
    made while the trained ones still exist. They are most of a large fit's
    memory: 500,000 users with the defaults keep 1.0e9 values, 4.2 GB in
    float32 and 8.3 GB more in float64. Counted in float32 alone, a fit whose
    copy could not fit passed the check, and failed only after every sweep.
    """
    values = (n_users + n_items) * n_factors * max_samples
    als = _als_memory(n_users, n_items, element_size, n_factors=n_factors, n_ratings=n_ratings, solver="cholesky")
    return als + values * (element_size + 8) + 4 * n_ratings * element_size


train_bayes_mf.memory_bytes = _bayes_memory
# Per rating and half-sweep: ALS's Gram matrix, plus the perturbation's and the fit's sampled products.
train_bayes_mf.work_per_rating = lambda n_factors=10, **_: (n_factors + 1) * (n_factors + 2) // 2 + 3 * (n_factors + 2)
