"""Surprise's builtin datasets, also where GroupLens cannot be reached.

Surprise downloads MovieLens from GroupLens, which many company networks (and
CI machines) cannot reach, while they can reach a Python package index. The
RecBole wheel on PyPI ships the same 100,000 MovieLens-100K ratings, so
:func:`load_builtin` falls back to it and writes Surprise's own ``u.data`` into
Surprise's data folder: from then on ``Dataset.load_builtin("ml-100k")`` works
too, with no download.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from surprise import Dataset
from surprise.builtin_datasets import BUILTIN_DATASETS, get_dataset_dir

__all__ = ["load_builtin", "dataset_path"]

#: The RecBole release whose wheel carries MovieLens-100K, and where.
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_ML100K = "recbole/dataset_example/ml-100k/ml-100k.inter"
ML100K_N_RATINGS = 100_000
_RATINGS = {"1", "2", "3", "4", "5", "1.0", "2.0", "3.0", "4.0", "5.0"}


def dataset_path(name: str) -> Path:
    """Return the file Surprise reads for the builtin dataset ``name``.

    Parameters
    ----------
    name : str
        A key of Surprise's builtin datasets: ``"ml-100k"``, ``"ml-1m"``,
        ``"jester"``.

    Returns
    -------
    pathlib.Path
        The path under Surprise's data folder (``$SURPRISE_DATA_FOLDER`` or
        ``~/.surprise_data``), whether or not the file exists yet.
    """
    _check_name(name)
    return Path(BUILTIN_DATASETS[name].path)


def load_builtin(name: str = "ml-100k", *, download: bool = True, timeout: float = 15.0):
    """Load a Surprise builtin dataset, fetching it without prompting if missing.

    The file is looked for where Surprise keeps it. When it is missing, the
    GroupLens download Surprise itself would use is tried first; for
    ``ml-100k``, when that fails, the ratings are taken from the RecBole wheel
    (an installed ``recbole`` package, else ``pip download`` of
    ``recbole==1.2.1`` with this interpreter's pip and its index settings).

    Parameters
    ----------
    name : str, default "ml-100k"
        ``"ml-100k"``, ``"ml-1m"`` or ``"jester"``.
    download : bool, default True
        When False, a missing file raises instead of being fetched.
    timeout : float, default 15.0
        Seconds allowed for the GroupLens connection before falling back.

    Returns
    -------
    surprise.Dataset
        Exactly what ``surprise.Dataset.load_builtin(name)`` returns.

    Raises
    ------
    ValueError
        If ``name`` is not a Surprise builtin dataset.
    FileNotFoundError
        If the file is missing and ``download`` is False.
    RuntimeError
        If every source failed; the message lists each failure and where to
        put the file by hand.
    """
    path = dataset_path(name)
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"Dataset {name!r} is not at {path}; call load_builtin({name!r}) "
                "with download=True, or place the file there yourself."
            )
        failures = []
        try:
            _download_grouplens(name, timeout)
        except (OSError, zipfile.BadZipFile) as exc:
            failures.append(f"GroupLens ({BUILTIN_DATASETS[name].url}): {exc}")
        if not path.is_file() and name == "ml-100k":
            try:
                _ml100k_from_recbole(path)
            except (OSError, RuntimeError, ValueError, zipfile.BadZipFile,
                    subprocess.SubprocessError) as exc:
                failures.append(f"PyPI ({RECBOLE_REQUIREMENT} wheel): {exc}")
        if not path.is_file():
            raise RuntimeError(
                f"Could not obtain dataset {name!r}. Tried:\n  - "
                + "\n  - ".join(failures or ["nothing"])
                + f"\nDownload it yourself and place the ratings file at {path} "
                "(set SURPRISE_DATA_FOLDER to use another folder)."
            )
    return Dataset.load_builtin(name, prompt=False)


def _check_name(name):
    if name not in BUILTIN_DATASETS:
        raise ValueError(
            f"name={name!r} is not a Surprise builtin dataset; "
            f"use one of {sorted(BUILTIN_DATASETS)}."
        )


def _download_grouplens(name, timeout):
    """Fetch and unpack the zip Surprise would download, with a timeout.

    Surprise's own ``download_builtin_dataset`` has no timeout, so on a network
    that silently drops packets it would hang.
    """
    folder = Path(get_dataset_dir())
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = Path(tmp) / "download.zip"
        with urllib.request.urlopen(BUILTIN_DATASETS[name].url, timeout=timeout) as response, \
                open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(folder / name)


def _ml100k_from_recbole(path: Path):
    """Write Surprise's ``u.data`` for ML-100K from RecBole's copy of it."""
    spec = importlib.util.find_spec("recbole")
    installed = None
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]).parent / RECBOLE_ML100K
        if candidate.is_file():
            installed = candidate
    if installed is not None:
        text = installed.read_text()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary=:all:", "--dest", tmp, RECBOLE_REQUIREMENT],
                check=True, capture_output=True, timeout=300,
            )
            wheels = list(Path(tmp).glob("recbole-*.whl"))
            if not wheels:
                raise RuntimeError("pip download produced no recbole wheel")
            with zipfile.ZipFile(wheels[0]) as zf:
                text = zf.read(RECBOLE_ML100K).decode()
    write_udata(text, path)


def write_udata(inter_text: str, path: Path):
    """Convert RecBole's ``.inter`` text to MovieLens ``u.data`` at ``path``.

    Parameters
    ----------
    inter_text : str
        Tab-separated ``user item rating timestamp`` lines after one header line.
    path : pathlib.Path
        Destination; written atomically so an interrupted run leaves no
        truncated file that Surprise would later read as the whole dataset.

    Raises
    ------
    ValueError
        If the text is not 100,000 four-column ratings between 1 and 5.
    """
    lines = inter_text.splitlines()
    if not lines or not lines[0].startswith("user_id"):
        raise ValueError("not a RecBole .inter file: missing its header line")
    rows = [line for line in lines[1:] if line.strip()]
    if len(rows) != ML100K_N_RATINGS:
        raise ValueError(f"expected {ML100K_N_RATINGS} ratings, found {len(rows)}")
    for row in rows:
        fields = row.split("\t")
        if len(fields) != 4 or fields[2] not in _RATINGS:
            raise ValueError(f"unexpected rating line {row!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text("\n".join(rows) + "\n")
    os.replace(tmp, path)
