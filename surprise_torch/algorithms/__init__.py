"""The Surprise algorithm classes: thin ``AlgoBase`` adapters over :func:`~surprise_torch.train_on_arrays`.

They validate parameters, flatten the Trainset into arrays, call the layer
below, and keep the fitted arrays on the host for ``estimate`` and ``test``.
They hold no numerics of their own.
"""

from ._base import fit_stacked
from .als import TorchALS
from .bayes import TorchBayesMF
from .nmf import TorchNMF
from .svd import TorchSVD
from .svdpp import TorchSVDpp

__all__ = ["TorchSVD", "TorchALS", "TorchSVDpp", "TorchNMF", "TorchBayesMF", "fit_stacked"]
