"""Parameter validation and device/dtype resolution shared by every algorithm."""

from __future__ import annotations

import numbers

import numpy as np
import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_int(name, value, *, minimum=1):
    """Return ``value`` if it is an integer >= ``minimum``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_float(name, value, *, minimum=0.0, strict=False):
    """Return ``value`` as a float if finite and >= (or >, if ``strict``) ``minimum``."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and value == value and abs(value) != float("inf"))
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum == -float("inf") else f" {'>' if strict else '>='} {minimum}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}.")
    return float(value)


def check_bool(name, value):
    """Return ``value`` as a bool if it is one (Python's or NumPy's) or the integer 0 or 1.

    Surprise's own algorithms take ``verbose=1`` and the like; anything else
    (``"yes"``, ``None``, 2) raises ``ValueError``.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be True or False (or 1 or 0), got {value!r}.")


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if not (isinstance(value, str) and value in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def check_random_state(value):
    """Return a CPU ``torch.Generator`` seeded from ``value``.

    ``None`` draws a fresh seed; an int seeds deterministically; a
    ``numpy.random.RandomState`` (as Surprise's algorithms accept) gives the
    seed by drawing from it, so the result is determined by its state, and
    it advances, as it does in Surprise. Generating on the CPU and then
    moving to the device gives the same start on every device.
    """
    if value is None:
        gen = torch.Generator()
        gen.seed()
        return gen
    if isinstance(value, np.random.RandomState):
        return torch.Generator().manual_seed(int(value.randint(0, 2**31 - 1)))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"random_state must be None, a non-negative integer or a numpy.random.RandomState, "
                         f"got {value!r}.")
    return torch.Generator().manual_seed(int(value))


def resolve_device(device) -> torch.device:
    """Turn the ``device`` parameter into a ``torch.device`` that exists here.

    ``"auto"`` picks CUDA, then MPS, then the CPU. An explicit device that is
    not available raises ``ValueError`` instead of failing later inside torch.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device, got {device!r}."
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={device!r} but MPS is not available here; use device='auto' or 'cpu'.")
    elif dev.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'mps'.")
    return dev


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """Turn the ``dtype`` parameter into a floating ``torch.dtype``.

    ``None`` means float32, the fast choice on every device. MPS has no
    float64, so asking for it there is an error rather than a silent downcast.
    """
    if dtype is None:
        dtype = torch.float32
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or a torch dtype, got {dtype!r}.")
        dtype = _DTYPES[dtype]
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}.")
    if device.type == "mps" and dtype == torch.float64:
        raise ValueError("dtype=float64 is not supported on MPS; use dtype='float32'.")
    return dtype
