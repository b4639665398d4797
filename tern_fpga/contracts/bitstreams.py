"""The committed bitstreams' manifests (``bitstreams/<board>-<preset>.json``, written by
``tern build``), read in one place.

A manifest describes a bitstream built for one board and one set of accelerator parameters.
Anything that takes figures from it (Fmax for projected tokens/s, utilisation for the power
estimate and the sweep) must use the manifest of exactly those parameters: after a preset
changes, the old manifest still sits under the preset's name, but it is another design.
:func:`manifest` checks the parameters' hash and says why it refused one.
"""

from __future__ import annotations

import json
from pathlib import Path

from tern_fpga.contracts import paths
from tern_fpga.contracts.errors import TernError

__all__ = ["BITSTREAMS", "ManifestMismatch", "all_manifests", "manifest", "manifest_for"]

BITSTREAMS = paths.BITSTREAMS or paths.BUILD / "bitstreams"  # an installed copy has none


class ManifestMismatch(TernError):
    """A manifest exists under the board's and preset's name but describes other parameters."""


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TernError(f"cannot read the bitstream manifest {path}: {error}; rebuild it "
                        f"(tern build) or restore it (git checkout -- {path.name})") from None
    if not isinstance(data, dict):
        raise TernError(f"{path} is not a bitstream manifest (expected a JSON object)")
    return data


def all_manifests(directory: Path | None = None) -> list[tuple[Path, dict]]:
    """Every manifest in ``directory`` (default :data:`BITSTREAMS`), in file-name order."""
    directory = BITSTREAMS if directory is None else Path(directory)
    return [(path, _read(path)) for path in sorted(directory.glob("*.json"))]


def _hash_text(params) -> str:
    return f"0x{params.hash:016x}"


def manifest(board: str, params, directory: Path | None = None, *,
             strict: bool = False) -> dict | None:
    """The manifest of the bitstream built for ``board`` with exactly ``params``.

    Returns ``None`` when there is none. A manifest under ``<board>-<params.name>.json`` whose
    parameter hash differs is another design: ``None`` too, or with ``strict`` a
    :class:`ManifestMismatch` that names both hashes and the fix.
    """
    directory = BITSTREAMS if directory is None else Path(directory)
    path = directory / f"{board}-{params.name}.json"
    if not path.exists():
        return None
    data = _read(path)
    if data.get("params_hash") != _hash_text(params):
        if strict:
            raise ManifestMismatch(
                f"{path} was built for other parameters (hash {data.get('params_hash')}, not "
                f"{_hash_text(params)} of the current {params.name!r} preset); rebuild it: "
                f"tern build --board {board} --preset {params.name}")
        return None
    return data


def manifest_for(params, board: str | None = None, *,
                 directory: Path | None = None) -> dict | None:
    """The manifest built with exactly ``params`` for ``board`` (for any board when ``None``:
    then the first in file-name order); ``None`` if none."""
    for _, data in all_manifests(directory):
        if data.get("params_hash") == _hash_text(params) and board in (None, data.get("board")):
            return data
    return None
