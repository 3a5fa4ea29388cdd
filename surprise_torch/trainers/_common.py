"""Pieces every matrix-factorization trainer shares: the fitted model, evaluation, divergence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

#: Called after every epoch with its 1-based number and that epoch's metrics.
EpochCallback = Callable[[int, dict], None]


class TrainingDivergedError(FloatingPointError):
    """Training produced a NaN or infinite loss or factor.

    Raised instead of returning a model that would predict NaN. The usual cure
    is a smaller learning rate or more regularisation.
    """


@dataclass
class MFModel:
    """A fitted biased matrix factorization ``mu + bu[u] + bi[i] + pu[u] . qi[i]``.

    Attributes
    ----------
    global_mean : float
        ``mu``; 0 for unbiased models.
    pu : torch.Tensor
        ``(n_users, n_factors)`` user factors.
    qi : torch.Tensor
        ``(n_items, n_factors)`` item factors.
    bu, bi : torch.Tensor
        User and item biases (zeros for unbiased models).
    history : dict of str to list of float
        Per-epoch metrics: ``loss`` (the regularised objective per rating),
        ``train_rmse``, and ``eval_rmse`` when an evaluation set was given.
    extras : dict of str to torch.Tensor
        Further fitted arrays of richer models (SVD++'s implicit factors ``yj``).
    timings : dict
        Set by :func:`~surprise_torch.train_on_arrays`: the layout used and
        the seconds spent building the tensors.
    """

    global_mean: float
    pu: torch.Tensor
    qi: torch.Tensor
    bu: torch.Tensor
    bi: torch.Tensor
    history: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvalData:
    """Ratings to score after each epoch (the seed's test curve).

    ``users``/``items`` hold inner ids, -1 for ones unknown to the trainset;
    estimates are clipped to ``rating_scale`` as Surprise's ``predict`` does,
    so the last ``eval_rmse`` equals ``surprise.accuracy.rmse`` of ``test``.
    """

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor
    rating_scale: tuple
    biased: bool
    default: float


def eval_rmse(data: Optional[EvalData], mu, pu, qi, bu, bi) -> Optional[float]:
    """RMSE of a factorization on ``data``, following Surprise SVD's unknown-id rules."""
    if data is None or data.users.numel() == 0:
        return None
    ku, ki = data.users >= 0, data.items >= 0
    u, i = data.users.clamp(min=0), data.items.clamp(min=0)
    both = ku & ki
    dot = (pu[u] * qi[i]).sum(1) * both
    if data.biased:
        est = mu + bu[u] * ku + bi[i] * ki + dot
    else:
        est = torch.where(both, dot, torch.full_like(dot, data.default))
    est = est.clamp(*data.rating_scale)
    return math.sqrt(float(((est - data.ratings) ** 2).mean()))


def check_epoch(epoch: int, metrics: dict, hint: str):
    """Raise ``TrainingDivergedError`` if any metric of this epoch is not finite."""
    for name, value in metrics.items():
        if value is not None and not math.isfinite(value):
            raise TrainingDivergedError(
                f"Training diverged: {name} became {value} at epoch {epoch}. {hint}"
            )


def record(history: dict, epoch: int, metrics: dict, callback: Optional[EpochCallback], hint: str):
    """Check one epoch's metrics, append them to ``history`` and pass them on."""
    metrics = {k: v for k, v in metrics.items() if v is not None}
    check_epoch(epoch, metrics, hint)
    for name, value in metrics.items():
        history.setdefault(name, []).append(value)
    if callback is not None:
        callback(epoch, metrics)


def init_factors(n: int, k: int, init_mean: float, init_std_dev: float, generator: torch.Generator,
                 device, dtype) -> torch.Tensor:
    """Normal initial factors drawn on the CPU, so a seed means the same start on any device."""
    out = torch.empty((n, k), dtype=torch.float64)
    out.normal_(init_mean, init_std_dev, generator=generator)
    return out.to(device=device, dtype=dtype)


def safe_counts(counts: torch.Tensor) -> torch.Tensor:
    """Counts floored at 1, so rows with no ratings divide and regularise harmlessly."""
    return counts.clamp(min=1)
