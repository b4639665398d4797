"""From a checkpoint folder to a ``.tern`` file, and from a ``.tern`` file to a golden model."""

from __future__ import annotations

import hashlib
from pathlib import Path

from quant.checkpoint import load_pretrained
from quant.compiler import CompiledModel, compile_model
from sim.golden_model import GoldenModel
from sim.isa import ISA_VERSION
from tern.export_format import ExportFormatError, TernExport, read_export, write_export
from tern.params import AcceleratorParameters

__all__ = ["export_checkpoint", "golden_from_export", "golden_from_file", "to_export"]


def _checkpoint_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in (".json", ".safetensors", ".bin"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def to_export(compiled: CompiledModel, metadata: dict | None = None) -> TernExport:
    """Wrap a compiled model with the metadata the golden model and the host driver read."""
    return TernExport(
        model_config=compiled.model_config,
        params=compiled.params,
        sections=compiled.sections(),
        metadata={
            "isa_version": ISA_VERSION,
            "memory_map": compiled.memory_map,
            "matrices": compiled.matrices,
            "weight_words": compiled.weight_words,
            "embedding_shift": compiled.embedding_shift,
            **(metadata or {}),
        })


def export_checkpoint(checkpoint, params: AcceleratorParameters, output,
                      packing: str = "2bit") -> TernExport:
    """Compile the checkpoint folder for ``params`` and write ``output``; returns the export."""
    checkpoint = Path(checkpoint)
    model = load_pretrained(checkpoint)
    export = to_export(compile_model(model, params), {
        "source_checkpoint": str(checkpoint),
        "source_sha256": _checkpoint_digest(checkpoint),
    })
    write_export(output, export, packing=packing)
    return export


def golden_from_export(export: TernExport, trace: bool = False) -> GoldenModel:
    if export.metadata.get("isa_version") != ISA_VERSION:
        raise ExportFormatError(
            f"the export's program is for ISA version {export.metadata.get('isa_version')!r}, "
            f"this tern runs version {ISA_VERSION}; re-export it with this tern")
    missing = [name for name in ("program", "entry_points", "weights", "vector_init",
                                 "constants", "embeddings") if name not in export.sections]
    if missing:
        raise ExportFormatError(
            f"the export lacks section(s) {missing}: it was not written by `tern export`")
    return GoldenModel(export.params, export.sections, trace=trace)


def golden_from_file(path, trace: bool = False) -> tuple[TernExport, GoldenModel]:
    export = read_export(path)
    return export, golden_from_export(export, trace=trace)
