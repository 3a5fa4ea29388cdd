"""Surprise's SVD++ on PyTorch: SVD plus implicit feedback from which items each user rated.

Training is :func:`~surprise_torch.train_svd` with ``implicit=True``: the
implicit sums ``|N(u)|^-1/2 sum_{j in N(u)} yj`` of all users are one sparse
product per epoch, never a loop over users. The trainer also returns those
sums for the fitted ``yj`` (``implicit_``), over the same set ``N(u)`` it
trained with, so ``estimate`` and ``test`` compute each user's term once,
not once per prediction.
"""

from __future__ import annotations

from .svd import TorchSVD

__all__ = ["TorchSVDpp"]


class TorchSVDpp(TorchSVD):
    """Surprise's SVDpp (SVD++), trained with PyTorch.

    Same model, parameter names, fitted attributes (``pu``, ``qi``, ``yj``,
    ``bu``, ``bi``) and ``estimate`` rules as ``surprise.SVDpp``, trained by
    full-batch optimizer steps like :class:`~surprise_torch.TorchSVD`. As
    there, ``lr_all`` is an Adam step size, so it, ``reg_all``, ``n_epochs``
    and ``n_factors`` default to the values our search found best (Surprise:
    20 factors, 20 epochs; see ``benchmarks/results/tuning-svdpp``).

    Parameters
    ----------
    n_factors : int, default 50
        0 fits the biases alone, as Surprise's SVDpp allows.
    n_epochs : int, default 50
    init_mean, init_std_dev : float, default 0, 0.1
    lr_all, reg_all : float, default 0.1, 0.11
    lr_bu, lr_bi, lr_pu, lr_qi, lr_yj : float, optional
        Per-term learning rates; ``None`` takes ``lr_all``.
    reg_bu, reg_bi, reg_pu, reg_qi, reg_yj : float, optional
        Per-term regularisation; ``None`` takes ``reg_all``.
    optimizer : str or type, default "adam"
    random_state : int, optional
    verbose : bool, default False
    cache_ratings : bool, default False
        Accepted for compatibility with Surprise; it has no effect, since
        the ratings are always held as tensors.
    device : str or torch.device, default "auto"
    dtype : str or torch.dtype, optional
    layout : {"auto", "dense", "sparse"}, default "auto"
        How the ratings reach the trainer: a dense matrix and mask, or a
        sparse tensor; "auto" is sparse on the CPU and CUDA (see
        ``surprise_torch.arrays.choose_layout``). Both give the same model.
    log_dir : str, optional
    on_divergence : {"warn", "raise"}, default "warn"
        When training blows up (a NaN, or a training RMSE far above
        predicting the mean): warn with a ``TrainingDivergedWarning`` naming
        this algorithm's parameters and keep the last sound epoch's model, so
        that a grid search survives one bad point with finite, poor scores;
        or raise ``TrainingDivergedError``.
    prior_bias, prior_factors : float, default 0, 0
        As for :class:`~surprise_torch.TorchSVD` (``prior_factors`` covers
        ``yj`` too): each row regularised as if it had this many more ratings.

    Attributes
    ----------
    pu, qi, yj : numpy.ndarray
        User, item and implicit item factors.
    bu, bi : numpy.ndarray
    implicit_ : numpy.ndarray
        ``(n_users, n_factors)``: each user's ``|N(u)|^-1/2 sum_{j in N(u)} yj``.
    history : dict of str to list of float
    device_, layout_, n_threads_, diverged_, conversion_s_
        What the last fit ran on and how it ended (see ``TorchMFAlgo``).
    """

    def __init__(self, n_factors=50, n_epochs=50, init_mean=0.0, init_std_dev=0.1, lr_all=0.1,
                 reg_all=0.11, lr_bu=None, lr_bi=None, lr_pu=None, lr_qi=None, lr_yj=None, reg_bu=None,
                 reg_bi=None, reg_pu=None, reg_qi=None, reg_yj=None, optimizer="adam", random_state=None,
                 verbose=False, cache_ratings=False, device="auto", dtype=None, layout="auto", log_dir=None,
                 on_divergence="warn", prior_bias=0.0, prior_factors=0.0):
        super().__init__(n_factors=n_factors, n_epochs=n_epochs, init_mean=init_mean,
                         init_std_dev=init_std_dev, lr_all=lr_all, reg_all=reg_all, lr_bu=lr_bu,
                         lr_bi=lr_bi, lr_pu=lr_pu, lr_qi=lr_qi, reg_bu=reg_bu, reg_bi=reg_bi,
                         reg_pu=reg_pu, reg_qi=reg_qi, optimizer=optimizer, random_state=random_state,
                         verbose=verbose, device=device, dtype=dtype, layout=layout, log_dir=log_dir,
                         on_divergence=on_divergence, prior_bias=prior_bias, prior_factors=prior_factors)
        self.lr_yj = lr_yj
        self.reg_yj = reg_yj
        self.cache_ratings = cache_ratings

    # SVD++ always has baselines (biased=True from TorchSVD); it is no parameter, as in Surprise.
    _terms = ("bu", "bi", "pu", "qi", "yj")
    _implicit = True

    def _user_rows(self, users):
        return self.pu.take(users, axis=0) + self.implicit_.take(users, axis=0)
