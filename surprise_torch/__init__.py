"""PyTorch matrix factorization as drop-in Surprise algorithms.

>>> from surprise_torch import TorchSVD, TorchALS, TorchSVDpp, TorchNMF
>>> from surprise.model_selection import cross_validate
>>> cross_validate(TorchSVD(), data)  # doctest: +SKIP

The package is layered, and imports run one way, top to bottom:

- :mod:`surprise_torch.model_selection`: Surprise's ``GridSearchCV``,
  ``RandomizedSearchCV`` and ``cross_validate``, training many fits as one
  stacked program;
- :mod:`surprise_torch.algorithms`: the Surprise ``AlgoBase`` classes;
- :mod:`surprise_torch.arrays`: :func:`train_on_arrays`, training from
  ``(user, item, rating)`` arrays (layout, memory, threads, rating scale);
- :mod:`surprise_torch.trainers`: pure trainers on tensors, and the kernels
  they share.
"""

from .algorithms import TorchALS, TorchBayesMF, TorchNMF, TorchSVD, TorchSVDpp
from .arrays import train_on_arrays
from .recommend import top_n
from ._threads import set_num_threads
from .trainers import (MFModel, TrainingDivergedError, TrainingDivergedWarning, complete_als, solve_ridge_rows,
                       train_als, train_bayes_mf, train_nmf, train_svd)

__version__ = "0.1.0"

__all__ = [
    "TorchSVD",
    "TorchALS",
    "TorchSVDpp",
    "TorchNMF",
    "TorchBayesMF",
    "top_n",
    "train_svd",
    "train_als",
    "train_nmf",
    "train_bayes_mf",
    "train_on_arrays",
    "solve_ridge_rows",
    "complete_als",
    "MFModel",
    "TrainingDivergedError",
    "TrainingDivergedWarning",
    "set_num_threads",
    "__version__",
]
