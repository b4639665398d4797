"""Where things are: the package's folders, a source checkout's data, and the build folder.

In a source checkout the subpackages live in the top-level folders ``hw/``, ``sim/``, ``host/``
and ``quant/`` beside ``tern_fpga/`` (setuptools' ``package-dir`` mapping); in an installed wheel
they lie inside ``tern_fpga/``. Every module that needs a file asks here, so an installed copy
works outside a checkout: what only a checkout has (the shipped checkpoints, the committed
bitstreams, the benchmark report) is ``None`` there, and the commands that need it say so.
"""

from __future__ import annotations

import os
from pathlib import Path

from tern_fpga.contracts.errors import TernError

__all__ = ["BENCH", "BITSTREAMS", "BUILD", "CHECKOUT", "CHECKPOINTS", "PACKAGE", "SOURCE_ROOT",
           "SUBPACKAGES", "module_source", "package_folder", "require_checkout",
           "shipped_checkpoint"]

SUBPACKAGES = ("hw", "sim", "host", "quant")
PACKAGE = Path(__file__).resolve().parents[1]


def _checkout() -> Path | None:
    root = PACKAGE.parent
    is_checkout = (root / "pyproject.toml").is_file() and all(
        (root / name / "__init__.py").is_file() for name in SUBPACKAGES)
    return root if is_checkout else None


CHECKOUT: Path | None = _checkout()
# The folder that source paths (build ids, manifests) are given relative to.
SOURCE_ROOT = CHECKOUT or PACKAGE.parent
CHECKPOINTS: Path | None = CHECKOUT / "checkpoints" if CHECKOUT else None
BITSTREAMS: Path | None = CHECKOUT / "bitstreams" if CHECKOUT else None
BENCH: Path | None = CHECKOUT / "bench" if CHECKOUT else None
# Verilator builds, caches and demo exports: the checkout's build/, else a user cache folder;
# TERN_BUILD_DIR overrides both.
BUILD = Path(os.environ.get("TERN_BUILD_DIR") or (
    CHECKOUT / "build" if CHECKOUT else Path.home() / ".cache" / "tern-fpga" / "build"))


def package_folder(subpackage: str) -> Path:
    """The folder of ``tern_fpga.<subpackage>`` (``hw``, ``sim``, ``host`` or ``quant``)."""
    if subpackage not in SUBPACKAGES:
        raise ValueError(f"no subpackage {subpackage!r}; one of {', '.join(SUBPACKAGES)}")
    return (CHECKOUT or PACKAGE) / subpackage


def module_source(name: str) -> Path | None:
    """The source file of module ``name`` (``tern_fpga.hw.core``), or None if it is not one of
    the project's modules. Reads no module."""
    parts = name.split(".")
    if parts[0] != "tern_fpga":
        return None
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        base = package_folder(parts[1]).joinpath(*parts[2:])
    else:
        base = PACKAGE.joinpath(*parts[1:])
    for file in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if file.is_file():
            return file
    return None


def require_checkout(what: str) -> Path:
    """The checkout's root, or a clear error naming ``what`` needs it."""
    if CHECKOUT is None:
        raise TernError(f"{what} is part of tern's source checkout, not of the installed package; "
                        f"clone the repository (and run `make setup` there), or pass the file")
    return CHECKOUT


def shipped_checkpoint(preset_name: str) -> Path:
    """The folder of the shipped trained model of ``preset_name`` (``demo``, ``micro`` or
    ``stdlib``)."""
    return require_checkout(f"the shipped {preset_name} checkpoint") / "checkpoints" / preset_name
