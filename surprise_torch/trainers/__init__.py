"""The pure trainers: tensors in, a fitted :class:`MFModel` out.

Nothing here knows Surprise, Trainsets or NumPy id mappings: every trainer
takes a ``(n_users, n_items)`` rating tensor (dense with a mask, or sparse)
and returns factors on the same device. Layers above
(:mod:`surprise_torch.arrays`, then the algorithm classes in
:mod:`surprise_torch.algorithms`) import from here, never the other way.
"""

from ._common import EvalData, MFModel, TrainingDivergedError, TrainingDivergedWarning
from ._stack import Stack
from .als import complete_als, solve_ridge_rows, train_als, train_als_stacked
from .bayes import train_bayes_mf
from .nmf import train_nmf
from .svd import OPTIMIZERS, train_svd, train_svd_stacked

__all__ = ["train_svd", "train_als", "train_nmf", "train_bayes_mf", "train_svd_stacked", "train_als_stacked", "Stack",
           "solve_ridge_rows", "complete_als", "MFModel", "EvalData", "TrainingDivergedError",
           "TrainingDivergedWarning", "OPTIMIZERS"]
