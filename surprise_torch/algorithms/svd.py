"""TorchSVD: Surprise's SVD as an algorithm class, trained by :func:`~surprise_torch.trainers.train_svd`."""

from __future__ import annotations

from .._config import check_bool, check_float, check_int
from ..trainers.svd import check_optimizer, train_svd
from ._base import TorchMFAlgo

__all__ = ["TorchSVD"]


class TorchSVD(TorchMFAlgo):
    """Surprise's SVD (biased matrix factorization), trained with PyTorch.

    A drop-in replacement for ``surprise.SVD``: same model, parameter names,
    fitted attributes (``pu``, ``qi``, ``bu``, ``bi``) and ``estimate`` rules,
    but each epoch is one full-batch optimizer step computed with sparse
    products over all ratings at once, on the CPU or a GPU. Some defaults differ from Surprise's because the
    optimizer differs: ``lr_all=0.1`` is an Adam step size, not a per-rating
    SGD rate, and ``reg_all=0.1``, ``n_epochs=30`` are what that optimizer
    needs to beat Surprise's accuracy (see the README and
    ``benchmarks/results/tuning``).

    Parameters
    ----------
    n_factors : int, default 100
        0 fits the biases alone, as Surprise's SVD allows.
    n_epochs : int, default 30
        Passes over the trainset, one optimizer step each.
    biased : bool, default True
        Use baselines (``mu + bu + bi``). If False, plain ``pu . qi``, and
        predictions for unknown users or items are impossible.
    init_mean, init_std_dev : float, default 0, 0.1
        Normal initialisation of the factors.
    lr_all, reg_all : float, default 0.1, 0.1
        Learning rate and regularisation of every term.
    lr_bu, lr_bi, lr_pu, lr_qi : float, optional
        Per-term learning rates; ``None`` takes ``lr_all``.
    reg_bu, reg_bi, reg_pu, reg_qi : float, optional
        Per-term regularisation; ``None`` takes ``reg_all``.
    prior_bias, prior_factors : float, default 0, 0
        Ratings' worth of prior on every bias and on every factor row: a
        row is regularised as if it had this many more ratings (``reg_bu *
        (n_u + prior_bias) * bu^2``, not Surprise's ``reg_bu * n_u * bu^2``).
        0 is Surprise's objective. Where most users have a few ratings the
        per-rating penalty barely holds them; 10 and 5 were the best of a
        small grid there, and changed MovieLens's RMSEs by 0.001 or less (see
        the README, "Where the defaults do not transfer yet").
    optimizer : str or type, default "adam"
        ``"sgd"``, ``"rmsprop"``, ``"adam"`` or a ``torch.optim.Optimizer``
        subclass. Gradients are divided by each row's rating count, so plain
        SGD wants a learning rate near 1.
    random_state : int, optional
        Seed of the initial factors; the same seed gives identical models on
        the CPU.
    verbose : bool, default False
        Print each epoch's loss.
    device : str or torch.device, default "auto"
        ``"auto"`` picks CUDA, then MPS, then the CPU.
    dtype : str or torch.dtype, optional
        ``"float32"`` (default) or ``"float64"``.
    layout : {"auto", "dense", "sparse"}, default "auto"
        How the ratings reach the trainer: a dense matrix and mask, or a
        sparse tensor; "auto" is sparse on the CPU and CUDA (see
        ``surprise_torch.arrays.choose_layout``). Both give the same model.
    log_dir : str, optional
        Write the per-epoch curves for TensorBoard there (needs ``tensorboard``).
    on_divergence : {"warn", "raise"}, default "warn"
        When training blows up (a NaN, or a training RMSE far above
        predicting the mean): warn with a ``TrainingDivergedWarning`` naming
        this algorithm's parameters and keep the last sound epoch's model, so
        that a grid search survives one bad point with finite, poor scores;
        or raise ``TrainingDivergedError``.

    Attributes
    ----------
    pu, qi : numpy.ndarray
        User and item factors, ``(n_users, n_factors)`` and ``(n_items, n_factors)``.
    bu, bi : numpy.ndarray
        User and item biases (zeros when ``biased=False``).
    history : dict of str to list of float
        Per-epoch ``loss``, ``train_rmse`` and, with ``fit(..., eval_set=...)``,
        ``eval_rmse``.
    device_, layout_, n_threads_, diverged_, conversion_s_
        What the last fit ran on and how it ended (see ``TorchMFAlgo``).
    """

    def __init__(self, n_factors=100, n_epochs=30, biased=True, init_mean=0.0, init_std_dev=0.1,
                 lr_all=0.1, reg_all=0.1, lr_bu=None, lr_bi=None, lr_pu=None, lr_qi=None,
                 reg_bu=None, reg_bi=None, reg_pu=None, reg_qi=None, optimizer="adam",
                 random_state=None, verbose=False, device="auto", dtype=None, layout="auto", log_dir=None,
                 on_divergence="warn", prior_bias=0.0, prior_factors=0.0):
        super().__init__()
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.biased = biased
        self.init_mean = init_mean
        self.init_std_dev = init_std_dev
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.lr_bu, self.lr_bi, self.lr_pu, self.lr_qi = lr_bu, lr_bi, lr_pu, lr_qi
        self.reg_bu, self.reg_bi, self.reg_pu, self.reg_qi = reg_bu, reg_bi, reg_pu, reg_qi
        self.optimizer = optimizer
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype
        self.layout = layout
        self.log_dir = log_dir
        self.on_divergence = on_divergence
        self.prior_bias = prior_bias
        self.prior_factors = prior_factors

    def _trainer_kwargs(self):
        lr_all = check_float("lr_all", self.lr_all, strict=True)
        reg_all = check_float("reg_all", self.reg_all)
        lr = {t: lr_all if getattr(self, f"lr_{t}") is None
              else check_float(f"lr_{t}", getattr(self, f"lr_{t}"), strict=True) for t in self._terms}
        reg = {t: reg_all if getattr(self, f"reg_{t}") is None
               else check_float(f"reg_{t}", getattr(self, f"reg_{t}")) for t in self._terms}
        prior_bias = check_float("prior_bias", self.prior_bias)
        prior_factors = check_float("prior_factors", self.prior_factors)
        prior = {t: prior_bias if t in ("bu", "bi") else prior_factors for t in self._terms}
        return dict(
            n_factors=check_int("n_factors", self.n_factors, minimum=0),
            n_epochs=check_int("n_epochs", self.n_epochs, minimum=0),
            biased=check_bool("biased", self.biased),
            implicit=self._implicit,
            init_mean=check_float("init_mean", self.init_mean, minimum=float("-inf")),
            init_std_dev=check_float("init_std_dev", self.init_std_dev),
            lr=lr, reg=reg, prior=prior, optimizer=check_optimizer(self.optimizer),
        )

    _trainer = staticmethod(train_svd)
    _stack_varying = ("n_epochs", "lr", "reg", "prior")
    _terms = ("bu", "bi", "pu", "qi")
    _implicit = False

