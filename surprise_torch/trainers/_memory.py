"""Fresh CPU buffers backed by the kernel's 2 MB pages where Linux offers them.

A fit's first epoch writes every buffer it keeps for the first time, and
each fresh 4 KB page costs the process a fault. At ML-10M's size that is
about 36,000 pages (140 MB: the residuals, the reorder buffer, the
optimizer's state, the last sound state, the tile cut's order). Linux hands out 2 MB
pages instead, 512 times fewer faults, for memory a process marks
``MADV_HUGEPAGE`` before touching it, where transparent huge pages are set
to ``madvise`` (this machine's setting) or ``always``. ML-10M, medians of
ten processes a side: first epochs of 0.285 against 0.313 s, 8,200
against 35,500 fresh pages, later epochs and peak memory unchanged
(benchmarks/results/first-epoch-huge-pages-2-cpu).

Only the fits' own buffers are advised. torch's ``THP_MEM_ALLOC_ENABLE=1``
does it for every allocation of 2 MB or more in the process: about as fast
a first epoch, but a process's next fit was 20 ms slower
(benchmarks/results/first-epoch-thp-env-cpu), and it is the user's setting
to make, not a library's.
"""

from __future__ import annotations

import ctypes
import functools
import sys

import torch

#: Bytes per transparent huge page on x86-64 and most arm64 kernels.
HUGE_PAGE = 2 ** 21

#: Buffers smaller than this are left alone: they hold few whole huge pages, and small allocations come from
#: memory the process has touched already.
HUGE_PAGES_FROM = 2 ** 23

_MADV_HUGEPAGE = 14
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


@functools.lru_cache(maxsize=None)
def _madvise():
    """libc's ``madvise``, or None where huge pages cannot be asked for (not Linux, or set to ``never``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(_THP_MODE) as f:
            if "[never]" in f.read():
                return None
        advise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advise.restype = ctypes.c_int
    return advise


def advise_huge_pages(tensor: torch.Tensor) -> torch.Tensor:
    """Ask for 2 MB pages behind the whole huge pages inside ``tensor``'s memory, before its first touch.

    Only CPU tensors of at least :data:`HUGE_PAGES_FROM` bytes are advised.
    Memory already touched keeps its pages, and a refusal (an old kernel) is
    ignored: the advice changes how fast memory is first touched, never its
    contents.

    Parameters
    ----------
    tensor : torch.Tensor
        A contiguous tensor whose memory is not yet written (from ``torch.empty``).

    Returns
    -------
    torch.Tensor
        ``tensor``.
    """
    if tensor.device.type != "cpu" or tensor.nbytes < HUGE_PAGES_FROM:
        return tensor
    advise = _madvise()
    if advise is not None:
        first = -(-tensor.data_ptr() // HUGE_PAGE) * HUGE_PAGE
        end = (tensor.data_ptr() + tensor.nbytes) // HUGE_PAGE * HUGE_PAGE
        if end > first:
            advise(first, end - first, _MADV_HUGEPAGE)
    return tensor


def fresh_empty(*shape, like: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """``torch.empty(shape, **kwargs)`` (or ``torch.empty_like(like)``), with :func:`advise_huge_pages`."""
    tensor = torch.empty_like(like, memory_format=torch.contiguous_format, **kwargs) if like is not None \
        else torch.empty(*shape, **kwargs)
    return advise_huge_pages(tensor)


def fresh_zeros(*shape, like: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """``torch.zeros(shape, **kwargs)`` (or ``torch.zeros_like(like)``), with :func:`advise_huge_pages`."""
    return fresh_empty(*shape, like=like, **kwargs).zero_()
