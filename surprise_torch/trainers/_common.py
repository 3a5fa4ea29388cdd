"""Pieces every matrix-factorization trainer shares: the fitted model, evaluation, divergence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .._config import check_choice, check_int

#: Called after every epoch with its 1-based number and that epoch's metrics.
EpochCallback = Callable[[int, dict], None]


class TrainingDivergedError(FloatingPointError):
    """Training blew up: a NaN or infinite value, or an error far above predicting the mean.

    Raised (with ``on_divergence="raise"``) instead of returning a model that
    would predict nonsense. The usual cure is a smaller learning rate or more
    regularisation.
    """


class TrainingDivergedWarning(RuntimeWarning):
    """A fit blew up and returned its last sound state instead (``on_divergence="warn"``).

    The message names the algorithm and its parameters, so that a grid search
    says which of its points diverged.
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
        Further fitted arrays of richer models (SVD++'s implicit factors
        ``yj`` and each user's implicit sum ``implicit_``; the Bayesian
        model's kept samples ``pu_samples_`` and ``qi_samples_``, which
        replace ``pu`` and ``qi`` in its prediction).
    diverged : str or None
        Why training stopped early, when it blew up and the trainer returned
        its last sound state (``on_divergence="recover"``); None otherwise.
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
    diverged: Optional[str] = None
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


def eval_estimates(data: EvalData, mu, pu, qi, bu, bi) -> torch.Tensor:
    """A factorization's estimates of ``data``'s pairs, unclipped, following Surprise SVD's unknown-id rules."""
    ku, ki = data.users >= 0, data.items >= 0
    u, i = data.users.clamp(min=0), data.items.clamp(min=0)
    both = ku & ki
    dot = (pu[u] * qi[i]).sum(1) * both
    if data.biased:
        return mu + bu[u] * ku + bi[i] * ki + dot
    return torch.where(both, dot, torch.full_like(dot, data.default))


def estimates_rmse(data: EvalData, est: torch.Tensor) -> float:
    """RMSE of estimates of ``data``'s pairs, clipped to the rating scale as Surprise's ``predict`` does."""
    return math.sqrt(float(((est.clamp(*data.rating_scale) - data.ratings) ** 2).mean()))


def eval_rmse(data: Optional[EvalData], mu, pu, qi, bu, bi) -> Optional[float]:
    """RMSE of a factorization on ``data``, following Surprise SVD's unknown-id rules."""
    if data is None or data.users.numel() == 0:
        return None
    return estimates_rmse(data, eval_estimates(data, mu, pu, qi, bu, bi))


#: How far above its reference a training RMSE may go before the run counts as
#: blown up: the reference is the larger of predicting the mean (the model
#: every trainer starts near) and the first epoch's RMSE (a deliberately wide
#: initialisation). Sound runs stay below 1x; a learning rate that is too
#: large multiplies the error every epoch, passing 4x within a few epochs.
BLOW_UP = 4.0

ON_DIVERGENCE = ("raise", "recover")


class DivergenceGuard:
    """Judges every epoch of a trainer and says what to keep when one blows up.

    An epoch is sound when all its metrics are finite and its training RMSE
    is under :data:`BLOW_UP` times the reference. On the first unsound epoch
    the guard raises :class:`TrainingDivergedError` (``on_divergence="raise"``)
    or, with ``"recover"``, notes why in :attr:`diverged` and tells the
    trainer to stop and return its last sound state (or, if there is none, the
    model that predicts the mean: zero factors and biases).

    Parameters
    ----------
    values : torch.Tensor
        The training ratings the trainer fits (after its own centring).
    on_divergence : {"raise", "recover"}
    hint : str
        What the user can change, appended to the message.
    """

    def __init__(self, values: torch.Tensor, on_divergence: str, hint: str):
        check_choice("on_divergence", on_divergence, ON_DIVERGENCE)
        self.on_divergence, self.hint = on_divergence, hint
        # RMSE of the constant model: values are already centred where the model has a mean.
        # A dot product in the values' dtype: the reference only sets a threshold, and a float64 copy
        # of ML-10M's ratings cost 0.05 s of a first epoch.
        reference = math.sqrt(float(values.dot(values)) / values.numel()) if values.numel() else 0.0
        # Ratings that all equal the mean (one rating, or unary data such as "liked" = 1) give no scale of
        # their own: the mean fits them exactly and any model's RMSE is "infinitely" above it. Trainers
        # fitted through train_on_arrays see standardised ratings, whose unit is the ratings' spread, so 1
        # stands in (without it such a fit was reported diverged, or failed dividing by zero).
        self.reference = reference if reference > 0 and math.isfinite(reference) else 1.0
        self.first = None
        self.diverged: Optional[str] = None
        self.kept_epoch: Optional[int] = None

    def sound(self, epoch: int, metrics: dict) -> bool:
        """True if this epoch's metrics are sound; otherwise raise or note the divergence."""
        rmse = metrics.get("train_rmse")
        for name, value in metrics.items():
            if value is not None and not math.isfinite(value):
                return self._fail(f"{name} became {value} at epoch {epoch}")
        if rmse is None:
            return True
        if self.first is None:
            self.first = rmse
        limit = BLOW_UP * max(self.reference, self.first)
        if rmse > limit:
            return self._fail(f"the training RMSE grew to {rmse / self.reference:.3g} times that of predicting "
                              f"the mean at epoch {epoch}")
        return True

    def _fail(self, what: str) -> bool:
        message = f"Training diverged: {what}. {self.hint}"
        if self.on_divergence == "raise":
            raise TrainingDivergedError(message)
        self.diverged = message
        return False

    def keep(self, epoch: int):
        """Note that the trainer has kept the state after ``epoch`` epochs (0: the initial one) as sound."""
        self.kept_epoch = epoch

    def report(self) -> Optional[str]:
        """None if training never blew up; else why, and which state the trainer returned."""
        if self.diverged is None:
            return None
        if self.kept_epoch is None:
            kept = "zero factors and biases (predicting the global mean, where the model has one)"
        elif self.kept_epoch == 0:
            kept = "the initial model"
        else:
            kept = f"the model after epoch {self.kept_epoch}"
        return f"{self.diverged} Returned {kept} instead."

    def fail(self, epoch: int, what: str) -> bool:
        """Report a divergence found by the trainer itself (a failed solve, say) at ``epoch``."""
        return self._fail(f"{what} at epoch {epoch}")


def record(history: dict, epoch: int, metrics: dict, callback: Optional[EpochCallback]):
    """Append one epoch's metrics to ``history`` and pass them on."""
    metrics = {k: v for k, v in metrics.items() if v is not None}
    for name, value in metrics.items():
        history.setdefault(name, []).append(value)
    if callback is not None:
        callback(epoch, metrics)


def truncate(history: dict, n_epochs: int):
    """Drop the epochs after ``n_epochs`` from ``history`` (those of a state that was not kept)."""
    for values in history.values():
        del values[max(n_epochs, 0):]


def check_sizes(n_factors, n_epochs: list) -> tuple:
    """A trainer's ``n_factors`` and each fit's ``n_epochs``, checked: integers >= 0.

    0 factors fit the biases alone (Surprise's SVD allows it too); 0 epochs
    return the initial model.

    Returns
    -------
    tuple
        ``(n_factors, n_epochs)`` as an ``int`` and a list of ``int``.

    Raises
    ------
    ValueError
        Naming the parameter that is not an integer >= 0.
    """
    return check_int("n_factors", n_factors, minimum=0), [check_int("n_epochs", e, minimum=0) for e in n_epochs]


#: Values per chunk in which :func:`init_factors` draws into its ``out`` (a multiple of 16; see there).
INIT_CHUNK = 2 ** 18


def init_factors(n: int, k: int, init_mean: float, init_std_dev: float, generator: torch.Generator,
                 device, dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """Normal initial factors drawn on the CPU in float32, so a seed means the same start on any device and dtype.

    float32 draws are exact in float64 too, and drawing them is five times
    faster than drawing float64 (0.03 against 0.14 s at ML-10M's size).

    Parameters
    ----------
    n, k : int
        Rows and columns.
    init_mean, init_std_dev : float
    generator : torch.Generator
        CPU generator.
    device, dtype
        Of the result.
    out : torch.Tensor, optional
        ``(n, k)`` destination (any strides, device and dtype), filled with
        the same values a whole ``(n, k)`` draw gives, a chunk of
        :data:`INIT_CHUNK` values at a time: no fresh ``(n, k)`` temporary
        (ML-10M's user factors: 28 MB of new pages, about 7 ms), and each
        chunk is copied while it is cached.

    Returns
    -------
    torch.Tensor
        ``out``, or a new ``(n, k)`` tensor.
    """
    if out is None:
        out = torch.empty((n, k), dtype=torch.float32)
        out.normal_(init_mean, init_std_dev, generator=generator)
        return out.to(device=device, dtype=dtype)
    # torch draws float32 normals in blocks of 16 (Box-Muller within a block; a last partial block is
    # redrawn as the last 16 values), so chunks of whole blocks, the last of at least 16 values, continue
    # one stream exactly: the chunks run to at least one chunk before the end, the rest goes in one draw.
    rows = max(1, INIT_CHUNK // max(k, 1)) // 16 * 16 or 16
    buffer = torch.empty((min(n, 2 * rows), k), dtype=torch.float32)
    start = 0
    while start < n:
        stop = start + rows if n - start >= 2 * rows else n
        part = buffer[:stop - start]
        part.normal_(init_mean, init_std_dev, generator=generator)
        out[start:stop].copy_(part)
        start = stop
    return out


def sum64(values: torch.Tensor, center: float = 0.0, square: bool = False, chunk: int = 2 ** 20) -> float:
    """``sum(values - center)``, or with ``square`` the sum of its squares, in float64 a chunk at a time.

    Means, variances and sums of squared residuals of float32 ratings need
    float64 sums, but not a float64 copy of every rating: at ML-10M's size
    one cost 0.045 s, mostly in faulting in its fresh pages; chunks of a
    million reuse the same memory. One host sync, whatever the chunks.
    In torch, not NumPy, also for NumPy arrays: NumPy's dot runs on
    OpenBLAS, whose threads spin after each call and take the cores from
    torch's (ML-1M: 0.08-0.09 s first epochs against 0.04-0.06 s).
    """
    sums = []
    for part in values.reshape(-1).split(chunk):
        part = part.double()
        if center:
            part = part - center  # not in place: float64 values' chunk is a view of them
        sums.append(part.dot(part) if square else part.sum())
    return float(torch.stack(sums).sum()) if sums else 0.0


def all_finite(values: torch.Tensor) -> bool:
    """Whether every value of a floating-point tensor is finite (no NaN, no infinity).

    Through its sum first: a NaN or an infinity among the values makes the
    sum NaN or infinite, so a finite sum settles it in one reduction with no
    temporary. ``torch.isfinite(t).all()`` builds a boolean copy in several
    passes: 184 against 10 ms for a 500,000 x 104 factor table. Only a sum
    that is not finite, from bad values or from finite ones too large to
    add up, is checked value by value.
    """
    if values.numel() == 0 or math.isfinite(values.sum()):
        return True
    return bool(torch.isfinite(values).all())


def mean_and_deviation64(values: torch.Tensor, chunk: int = 2 ** 20) -> tuple:
    """The mean of ``values`` and the sum of their squared deviations from it, in float64, in one pass.

    :func:`sum64` twice (the mean, then the squares about it) reads every
    value twice; here each chunk, once converted and cached, gives its sum
    and its squares about its own mean, and the chunks combine exactly in
    exact arithmetic (``sum (x - mean)^2 = sum_c [q_c + n_c (mean_c -
    mean)^2]``), as accurate as the two passes. ML-10M's ratings: 5 against
    10 ms. The mean is :func:`sum64`'s (with the same ``chunk``) to the last bit. One host sync.
    """
    if values.numel() == 0:
        return 0.0, 0.0
    parts = values.reshape(-1).split(chunk)
    sums, squares = [], []
    for part in parts:
        part = part.to(torch.float64, copy=True)  # centred in place below: never a view of float64 values
        sums.append(part.sum())
        part.sub_(sums[-1] / part.numel())
        squares.append(part.dot(part))
    sums = torch.stack(sums)
    total, *rest = torch.cat([sums.sum()[None], sums, torch.stack(squares)]).tolist()
    mean = total / values.numel()
    return mean, sum(q + len(p) * (s / len(p) - mean) ** 2
                     for s, q, p in zip(rest[:len(parts)], rest[len(parts):], parts))


#: Bytes to which the rows of factor tables that sparse products read are padded (an AVX2 register).
ROW_ALIGNMENT = 32


def aligned_width(width: int, element_size: int) -> int:
    """``width`` rounded up so that rows of a contiguous ``(n, width)`` table of ``element_size``-byte
    elements span whole :data:`ROW_ALIGNMENT`-byte words.

    The sparse products gather one row per rating and take it in vector-sized
    steps; a row that starts mid-word straddles cache lines and ends in a
    scalar tail. Padding TorchSVD's ``k + 2`` columns with zeros makes the
    three products of a round of three ML-100K fits 12% faster on one thread,
    at ``k = 100`` (102 -> 104 columns; 5.4 against 4.7 ms) and ``k = 50``
    (52 -> 56), for 2-8% more multiply-adds.
    """
    per_word = max(1, ROW_ALIGNMENT // element_size)
    return -(-width // per_word) * per_word


def safe_counts(counts: torch.Tensor) -> torch.Tensor:
    """Counts floored at 1, so rows with no ratings divide and regularise harmlessly."""
    return counts.clamp(min=1)


def check_penalties(dtype: torch.dtype, terms) -> None:
    """Refuse regularisation whose penalty weights overflow ``dtype``, naming it.

    ``terms`` holds ``(name, reg, prior, count)``: a term's regularisation
    and prior (the largest over the fits) and the largest rating count among
    its rows. A row's penalty is weighted ``reg * (count + prior)`` and
    multiplies squared factors; past the square root of ``dtype``'s largest
    value (1.8e19 in float32) training ended in NaN with a hint to lower the
    learning rate, or in torch's overflow error, without naming the cause.
    """
    limit = math.sqrt(torch.finfo(dtype).max)
    for name, reg, prior, count in terms:
        if reg * (count + prior) >= limit:
            raise ValueError(f"{name} weigh a row's penalty {reg:g} x ({count:g} ratings + {prior:g}), past what "
                             f"{dtype} holds ({limit:.2g}); use smaller values.")


def no_prior(prior) -> bool:
    """Whether a prior (a float, or a tensor of one per row) is the float 0: nothing to add."""
    return not isinstance(prior, torch.Tensor) and prior == 0


def with_prior(counts: torch.Tensor, prior) -> torch.Tensor:
    """Each row's count plus its prior's pseudo-ratings (a float, or one per row): what its penalty weighs.

    ``counts`` itself without a prior, so that a fit without one computes
    what it always did, to the bit.
    """
    return counts if no_prior(prior) else counts + prior
