"""PyTorch matrix factorization as drop-in Surprise algorithms.

>>> from surprise_torch import TorchSVD, TorchALS
>>> from surprise.model_selection import cross_validate
>>> cross_validate(TorchSVD(), data)  # doctest: +SKIP
"""

from ._mf import MFModel, TrainingDivergedError
from .als import TorchALS, complete_als, solve_ridge_rows, train_als
from .svd import TorchSVD, train_svd

__version__ = "0.1.0"

__all__ = [
    "TorchSVD",
    "TorchALS",
    "train_svd",
    "train_als",
    "solve_ridge_rows",
    "complete_als",
    "MFModel",
    "TrainingDivergedError",
    "__version__",
]
