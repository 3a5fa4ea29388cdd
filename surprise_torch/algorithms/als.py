"""TorchALS: biased matrix factorization by alternating least squares, as a Surprise algorithm."""

from __future__ import annotations

from .._config import check_bool, check_choice, check_float, check_int
from ..trainers.als import train_als
from ._base import TorchMFAlgo

__all__ = ["TorchALS"]


class TorchALS(TorchMFAlgo):
    """Biased matrix factorization by alternating least squares.

    Same model and ``estimate`` rules as :class:`~surprise_torch.TorchSVD`
    (and Surprise's SVD), trained without learning rates: every sweep solves
    all users' and then all items' regularised least-squares problems,
    batched on the CPU or a GPU, by warm-started conjugate gradients (the
    default) or exactly.

    Parameters
    ----------
    n_factors : int, default 20
        0 fits the biases alone (alternating least squares for the baselines).
    n_epochs : int, default 10
        Sweeps (all users, then all items).
    biased : bool, default True
        Use baselines; if False, unknown users/items make predictions impossible.
    reg : float, default 0.12
        Regularisation of the factors.
    reg_bu, reg_bi : float, default 0.06
        Regularisation of the user and item biases.
    weighted_reg : bool, default True
        Scale each user's and item's regularisation by its rating count (ALS-WR).
    prior_bias, prior_factors : float, default 0, 0
        Pseudo-ratings added to each row's count in its bias's and its
        factors' penalties, as :class:`~surprise_torch.TorchSVD`'s: rows with
        a few ratings are held as if they had this many more.
    init_mean, init_std_dev : float, default 0, 0.1
        Normal initialisation of the factors.
    random_state : int, optional
    verbose : bool, default False
    device : str or torch.device, default "auto"
    dtype : str or torch.dtype, optional
    layout : {"auto", "dense", "sparse"}, default "auto"
        How the ratings reach the trainer: a dense matrix and mask, or a
        sparse tensor; "auto" is sparse on the CPU and CUDA (see
        ``surprise_torch.arrays.choose_layout``). Both give the same model.
    log_dir : str, optional
        TensorBoard log directory (needs ``tensorboard``).
    distributed : bool, default False
        Train across all processes of ``torch.distributed`` (launch with
        ``torchrun``; every process fits the same trainset with the same
        ``random_state`` and ends with the whole model). Use ``gloo`` on
        CPUs, ``nccl`` on GPUs, with each process on its own device.
    on_divergence : {"warn", "raise"}, default "warn"
        When training blows up (a NaN, or a training RMSE far above
        predicting the mean): warn with a ``TrainingDivergedWarning`` naming
        this algorithm's parameters and keep the last sound epoch's model, so
        that a grid search survives one bad point with finite, poor scores;
        or raise ``TrainingDivergedError``.
    solver : {"cholesky", "cg"}, default "cg"
        "cholesky" solves every least-squares problem exactly. "cg" takes
        ``cg_steps`` conjugate-gradient steps per problem and half-sweep,
        started from the previous sweep's solution, without building the
        normal-equation matrices: inexact per sweep, converging to the same
        model, several times faster per sweep with many factors or many
        ratings (see ``surprise_torch.trainers.train_als``).
    cg_steps : int, default 3
        Conjugate-gradient steps per half-sweep with ``solver="cg"``.

    Attributes
    ----------
    pu, qi, bu, bi : numpy.ndarray
        Fitted factors and biases, as Surprise's SVD names them.
    history : dict of str to list of float
        Per-sweep ``loss``, ``train_rmse`` and optionally ``eval_rmse``.
    device_, layout_, n_threads_, diverged_, conversion_s_
        What the last fit ran on and how it ended (see ``TorchMFAlgo``).
    """

    def __init__(self, n_factors=20, n_epochs=10, biased=True, reg=0.12, reg_bu=0.06, reg_bi=0.06,
                 weighted_reg=True, init_mean=0.0, init_std_dev=0.1, random_state=None, verbose=False,
                 device="auto", dtype=None, layout="auto", log_dir=None, distributed=False, on_divergence="warn",
                 solver="cg", cg_steps=3, prior_bias=0.0, prior_factors=0.0):
        super().__init__()
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.biased = biased
        self.reg = reg
        self.reg_bu = reg_bu
        self.reg_bi = reg_bi
        self.weighted_reg = weighted_reg
        self.init_mean = init_mean
        self.init_std_dev = init_std_dev
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype
        self.layout = layout
        self.log_dir = log_dir
        self.distributed = distributed
        self.on_divergence = on_divergence
        self.solver = solver
        self.cg_steps = cg_steps
        self.prior_bias = prior_bias
        self.prior_factors = prior_factors

    def _trainer_kwargs(self):
        return dict(
            n_factors=check_int("n_factors", self.n_factors, minimum=0),
            n_epochs=check_int("n_epochs", self.n_epochs, minimum=0),
            biased=check_bool("biased", self.biased),
            reg=check_float("reg", self.reg, strict=True),
            reg_bu=check_float("reg_bu", self.reg_bu, strict=True),
            reg_bi=check_float("reg_bi", self.reg_bi, strict=True),
            weighted_reg=check_bool("weighted_reg", self.weighted_reg),
            prior_bias=check_float("prior_bias", self.prior_bias),
            prior_factors=check_float("prior_factors", self.prior_factors),
            init_mean=check_float("init_mean", self.init_mean, minimum=float("-inf")),
            init_std_dev=check_float("init_std_dev", self.init_std_dev),
            group=_world_group() if check_bool("distributed", self.distributed) else None,
            solver=check_choice("solver", self.solver, ("cholesky", "cg")),
            cg_steps=check_int("cg_steps", self.cg_steps),
        )

    _trainer = staticmethod(train_als)
    _stack_varying = ("n_epochs", "reg", "reg_bu", "reg_bi", "prior_bias", "prior_factors")


def _world_group():
    import torch.distributed as dist

    if not dist.is_initialized():
        raise ValueError("distributed=True needs torch.distributed initialised: launch with torchrun and call "
                         "torch.distributed.init_process_group() before fit.")
    return dist.group.WORLD
