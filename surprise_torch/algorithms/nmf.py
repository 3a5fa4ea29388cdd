"""TorchNMF: Surprise's NMF as an algorithm class, trained by :func:`~surprise_torch.trainers.train_nmf`."""

from __future__ import annotations

from .._config import check_bool, check_float, check_int
from ..trainers.nmf import train_nmf
from ._base import TorchMFAlgo

__all__ = ["TorchNMF"]


class TorchNMF(TorchMFAlgo):
    """Surprise's NMF (non-negative matrix factorization), trained with PyTorch.

    Same model, parameter names and defaults, fitted attributes and
    ``estimate`` rules as ``surprise.NMF``; every epoch's multiplicative
    update is computed for all ratings at once, on the CPU or a GPU.

    Parameters
    ----------
    n_factors : int, default 15
        0 leaves the biases alone (with ``biased``), as Surprise's NMF allows.
    n_epochs : int, default 50
    biased : bool, default False
        Use baselines. As Surprise warns, biased NMF overfits easily.
    reg_pu, reg_qi : float, default 0.06
    reg_bu, reg_bi : float, default 0.02
    lr_bu, lr_bi : float, default 0.005
    init_low, init_high : float, default 0, 1
        Uniform initialisation range; ``init_low`` must be >= 0.
    random_state : int, optional
    verbose : bool, default False
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

    Attributes
    ----------
    pu, qi, bu, bi : numpy.ndarray
    history : dict of str to list of float
    device_, layout_, n_threads_, diverged_, conversion_s_
        What the last fit ran on and how it ended (see ``TorchMFAlgo``).
    """

    def __init__(self, n_factors=15, n_epochs=50, biased=False, reg_pu=0.06, reg_qi=0.06, reg_bu=0.02,
                 reg_bi=0.02, lr_bu=0.005, lr_bi=0.005, init_low=0.0, init_high=1.0, random_state=None,
                 verbose=False, device="auto", dtype=None, layout="auto", log_dir=None, on_divergence="warn"):
        super().__init__()
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.biased = biased
        self.reg_pu, self.reg_qi, self.reg_bu, self.reg_bi = reg_pu, reg_qi, reg_bu, reg_bi
        self.lr_bu, self.lr_bi = lr_bu, lr_bi
        self.init_low, self.init_high = init_low, init_high
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype
        self.layout = layout
        self.log_dir = log_dir
        self.on_divergence = on_divergence

    def _trainer_kwargs(self):
        init_low = check_float("init_low", self.init_low)
        return dict(
            n_factors=check_int("n_factors", self.n_factors, minimum=0),
            n_epochs=check_int("n_epochs", self.n_epochs, minimum=0),
            biased=check_bool("biased", self.biased),
            **{name: check_float(name, getattr(self, name)) for name in
               ("reg_pu", "reg_qi", "reg_bu", "reg_bi", "lr_bu", "lr_bi")},
            init_low=init_low,
            init_high=check_float("init_high", self.init_high, minimum=init_low, strict=True),
        )

    _trainer = staticmethod(train_nmf)
