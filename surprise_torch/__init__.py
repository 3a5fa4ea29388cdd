"""PyTorch matrix factorization as drop-in Surprise algorithms.

>>> from surprise_torch import TorchSVD, TorchALS, TorchSVDpp, TorchNMF
>>> from surprise.model_selection import cross_validate
>>> cross_validate(TorchSVD(), data)  # doctest: +SKIP
"""

from ._mf import MFModel, TrainingDivergedError
from .arrays import train_on_arrays
from .als import TorchALS, complete_als, solve_ridge_rows, train_als
from .nmf import TorchNMF, train_nmf
from .recommend import top_n
from .svd import TorchSVD, train_svd
from .svdpp import TorchSVDpp

__version__ = "0.1.0"

__all__ = [
    "TorchSVD",
    "TorchALS",
    "TorchSVDpp",
    "TorchNMF",
    "top_n",
    "train_svd",
    "train_als",
    "train_nmf",
    "train_on_arrays",
    "solve_ridge_rows",
    "complete_als",
    "MFModel",
    "TrainingDivergedError",
    "__version__",
]
