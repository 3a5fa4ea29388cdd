"""What a benchmark result was measured on, recorded next to it."""

from __future__ import annotations

import os
import platform

import numpy as np
import surprise
import torch

import surprise_torch
from surprise_torch._config import resolve_device


def cpu_name() -> str:
    """The CPU model as the kernel reports it, else what Python can tell."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(device="auto") -> dict:
    """Versions, device, threads and hardware names, as a flat dict of strings."""
    dev = resolve_device(device)
    env = {
        "surprise_torch": surprise_torch.__version__,
        "torch": torch.__version__,
        "surprise": surprise.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(dev),
        "torch_threads": str(torch.get_num_threads()),
        "cpu": cpu_name(),
        "cpu_count": str(os.cpu_count()),
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
    return env
