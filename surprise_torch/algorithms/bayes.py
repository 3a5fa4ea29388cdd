"""TorchBayesMF: Bayesian matrix factorization (Gibbs-sampled BPMF) as a Surprise algorithm."""

from __future__ import annotations

from .._config import check_bool, check_float, check_int
from ..trainers.bayes import sampling_plan, train_bayes_mf
from ._base import TorchMFAlgo

__all__ = ["TorchBayesMF"]


class TorchBayesMF(TorchMFAlgo):
    """Bayesian matrix factorization, sampled by Gibbs sweeps on ALS's batched normal equations.

    Surprise's SVD model, ``mu + bu + bi + pu . qi``, with priors instead of
    regularisation: Gaussian factors and biases whose means and precisions
    (one per dimension, per side) have Normal-Gamma hyperpriors, and a
    Gamma prior on the noise precision, as in Salakhutdinov and Mnih's BPMF
    with libFM's hyperpriors. Every sweep draws all users' factors and
    biases (one batched ALS solve, by perturbation), their hyperparameters,
    then the items', then the noise (the global mean is the ratings' mean,
    as in Surprise's SVD). The estimate is the
    posterior predictive mean over the kept samples. There is no learning
    rate or regularisation to tune, and (ratings being standardised first)
    no dependence on the rating scale.

    Parameters
    ----------
    n_factors : int, default 10
        At least 1.
    n_epochs : int, default 200
        Gibbs sweeps in all, burn-in included.
    burn_in : int, default 10
        Sweeps whose samples are discarded; must be below ``n_epochs``.
    thinning : int, optional
        Keep every ``thinning``-th sample after the burn-in; None keeps as
        many as ``max_samples`` allows, evenly spread.
    max_samples : int, default 200
        The most samples kept (predictions average over them; memory grows
        with them: ``(n_users + n_items) x n_factors x max_samples`` values,
        kept in float64, and in the training dtype too while the fit ends:
        12 bytes a value in float32, about 12 GB for 500,000 users with the
        defaults). A fit that would not fit is refused before it starts.
    biased : bool, default True
        Sample ``mu + bu + bi`` too; if False, unknown users or items make
        predictions impossible, as in Surprise's SVD.
    init_std_dev : float, default 0.1
        Normal initialisation of the factors (the hyperparameters start as
        that distribution).
    prior_shape, prior_rate : float, default 0.5, 0.5
        Shape and rate of the Gamma hyperpriors on every precision (the
        factors' and biases' per dimension, and the noise's); libFM's.
    prior_strength : float, default 1
        Pseudo-observations behind the hyperprior mean of 0.
    random_state : int, optional
        Seed of every draw; the same seed gives the same model on the CPU.
    verbose : bool, default False
        Print each sweep's metrics.
    device, dtype, layout, log_dir, on_divergence
        As for :class:`~surprise_torch.TorchALS`.

    Attributes
    ----------
    pu, qi, bu, bi : numpy.ndarray
        Posterior means of the factors and biases, as Surprise's SVD names them.
    pu_samples_, qi_samples_ : numpy.ndarray
        The kept samples' factors side by side, ``(n_users, n_samples_ *
        n_factors)`` and ``(n_items, ...)``, scaled by ``n_samples_ ** -0.5``:
        ``pu_samples_[u] . qi_samples_[i]`` is the posterior mean of the
        samples' dot products. ``estimate``, ``test`` and ``top_n`` use them
        in Surprise's SVD formula: the posterior predictive mean.
    n_samples_ : int
        Samples kept.
    history : dict of str to list of float
        Per sweep: ``train_rmse`` of the current sample, ``train_rmse_mean``
        of the running posterior mean, ``noise_std``, and with
        ``fit(..., eval_set=...)`` the running mean's ``eval_rmse``.
    device_, layout_, n_threads_, diverged_, conversion_s_
        What the last fit ran on and how it ended (see ``TorchMFAlgo``).
    """

    def __init__(self, n_factors=10, n_epochs=200, burn_in=10, thinning=None, max_samples=200, biased=True,
                 init_std_dev=0.1, prior_shape=0.5, prior_rate=0.5, prior_strength=1.0, random_state=None,
                 verbose=False, device="auto", dtype=None, layout="auto", log_dir=None, on_divergence="warn"):
        super().__init__()
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.burn_in = burn_in
        self.thinning = thinning
        self.max_samples = max_samples
        self.biased = biased
        self.init_std_dev = init_std_dev
        self.prior_shape = prior_shape
        self.prior_rate = prior_rate
        self.prior_strength = prior_strength
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype
        self.layout = layout
        self.log_dir = log_dir
        self.on_divergence = on_divergence

    def _trainer_kwargs(self):
        # The sampling plan checks the counts and that they keep a sample; the trainer gets the counts as
        # given (thinning None: the trainer derives it), checked.
        n_epochs, burn_in, thinning = sampling_plan(self.n_epochs, self.burn_in, self.thinning, self.max_samples)
        return dict(
            n_factors=check_int("n_factors", self.n_factors),
            n_epochs=n_epochs,
            burn_in=burn_in,
            thinning=None if self.thinning is None else thinning,
            max_samples=check_int("max_samples", self.max_samples),
            biased=check_bool("biased", self.biased),
            init_std_dev=check_float("init_std_dev", self.init_std_dev),
            prior_shape=check_float("prior_shape", self.prior_shape, strict=True),
            prior_rate=check_float("prior_rate", self.prior_rate, strict=True),
            prior_strength=check_float("prior_strength", self.prior_strength, strict=True),
        )

    def _adopt(self, model, device, to_arrays_s):
        super()._adopt(model, device, to_arrays_s)
        self.n_samples_ = self.pu_samples_.shape[1] // max(1, self.pu.shape[1])

    def _user_rows(self, users):
        return self.pu_samples_.take(users, axis=0)

    def _item_factors(self):
        return self.qi_samples_

    _trainer = staticmethod(train_bayes_mf)
