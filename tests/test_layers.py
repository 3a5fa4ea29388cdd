"""The package's layers import one way: algorithms -> arrays -> trainers -> shared kernels."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "surprise_torch"

# Each layer, and the layers (by module path prefix) it must never import.
FORBIDDEN = {
    "trainers": ("surprise_torch.arrays", "surprise_torch.algorithms", "surprise_torch._data",
                 "surprise_torch.recommend", "surprise_torch.datasets", "surprise_torch.model_selection", "surprise"),
    "arrays": ("surprise_torch.algorithms", "surprise_torch.recommend", "surprise_torch.model_selection", "surprise"),
    "algorithms": ("surprise_torch.model_selection", "surprise_torch.recommend"),
}


def imported_modules(path: Path):
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module


def layer_files(layer):
    if layer == "arrays":
        return [PACKAGE / "arrays.py"]
    return sorted((PACKAGE / layer).glob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_upper_ones(layer):
    files = layer_files(layer)
    assert files
    for path in files:
        for module in imported_modules(path):
            for banned in FORBIDDEN[layer]:
                assert not (module == banned or module.startswith(banned + ".")), \
                    f"{path.relative_to(PACKAGE.parent)} imports {module}"


def test_the_checker_sees_relative_imports():
    modules = set(imported_modules(PACKAGE / "algorithms" / "svd.py"))
    assert "surprise_torch.trainers.svd" in modules and "surprise_torch._config" in modules
