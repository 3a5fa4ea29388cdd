"""Fresh CPU buffers backed by the kernel's 2 MB pages where Linux offers them.

A fit's first epoch writes every buffer it keeps for the first time, and
each fresh 4 KB page costs the process a fault. At ML-10M's size that is
about 36,000 pages (140 MB: the residuals, the reorder buffer, the
optimizer's state, the last sound state, the tile cut's order). Linux hands out 2 MB
pages instead, 512 times fewer faults, for memory a process marks
``MADV_HUGEPAGE`` before touching it, where transparent huge pages are set
to ``madvise`` (this machine's setting) or ``always``. ML-10M, medians of
ten processes a side, here in an hour when the host still backed the free
memory (see below): first epochs of 0.285 against 0.313 s, 8,200 against
35,500 fresh pages, later epochs and peak memory unchanged
(benchmarks/results/first-epoch-huge-pages-2-cpu).

No advice is given where a virtio balloon reports free memory to the host
(``VIRTIO_BALLOON_F_REPORTING``: this machine's microVM, and any VM whose
hypervisor turns free page reporting on). The host takes back free 2 MB
blocks a few seconds after they are freed, and those are the blocks 2 MB
pages come from: a new process then pays the host's first touch on every
one of them, while its 4 KB pages mostly come from memory the host still
backs. Here, in that state, ML-10M
first epochs took 0.473 s with the advice against 0.376 s without (medians of
eight processes a side, benchmarks/results/first-epoch-huge-pages-off-cpu);
the advice won only in the process's next fit, which reuses the first one's
pages at once (1.75x against 2.27x a later epoch).

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
from pathlib import Path

import torch

#: Bytes per transparent huge page on x86-64 and most arm64 kernels.
HUGE_PAGE = 2 ** 21

#: Buffers smaller than this are left alone: they hold few whole huge pages, and small allocations come from
#: memory the process has touched already.
HUGE_PAGES_FROM = 2 ** 23

_MADV_HUGEPAGE = 14
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


_BALLOONS = "/sys/bus/virtio/drivers/virtio_balloon"

#: The feature bit of a virtio balloon that reports free memory to the host (VIRTIO_BALLOON_F_REPORTING).
_F_REPORTING = 5


def host_reclaims_free_memory(balloons: str = _BALLOONS) -> bool:
    """Whether a virtio balloon device reports this machine's free memory to its host.

    Parameters
    ----------
    balloons : str
        The virtio balloon driver's sysfs directory, whose devices'
        ``features`` files hold one ``0``/``1`` per feature bit.

    Returns
    -------
    bool
        False where there is no such device (bare metal, other hypervisors,
        other systems) or it cannot be read.
    """
    try:
        for features in Path(balloons).glob("virtio*/features"):
            bits = features.read_text().strip()
            if len(bits) > _F_REPORTING and bits[_F_REPORTING] == "1":
                return True
    except OSError:
        pass
    return False


@functools.lru_cache(maxsize=None)
def _libc_madvise():
    """libc's ``madvise`` where huge pages can be asked for (Linux, not set to ``never``), else None."""
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


@functools.lru_cache(maxsize=None)
def _madvise():
    """:func:`_libc_madvise` where the advice pays: None also where the host takes back free memory."""
    return None if host_reclaims_free_memory() else _libc_madvise()


def advise_huge_pages(tensor: torch.Tensor) -> torch.Tensor:
    """Ask for 2 MB pages behind the whole huge pages inside ``tensor``'s memory, before its first touch.

    Only CPU tensors of at least :data:`HUGE_PAGES_FROM` bytes are advised, and
    nothing is where :func:`host_reclaims_free_memory` (see the module's notes).
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
