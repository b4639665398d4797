"""From a checkpoint folder to a ``.tern`` file, and from a ``.tern`` file to a golden model."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.export_format import (
    TernExport,
    write_export,
)
from tern_fpga.contracts.isa import ISA_VERSION
from tern_fpga.contracts.params import AcceleratorParameters
from tern_fpga.quant.checkpoint import load_pretrained
from tern_fpga.quant.compiler import CompiledModel, compile_model

__all__ = ["checkpoint_files", "export_checkpoint", "to_export"]


def checkpoint_files(folder) -> list[Path]:
    """The files of a checkpoint folder that an export reads (config, weights, index), in
    order: an export must never be written over one of them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.suffix in (".json", ".safetensors", ".bin") and path.is_file())


def _checkpoint_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in checkpoint_files(folder):
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
    """Compile the checkpoint folder for ``params`` and write ``output`` with its weights in
    ``packing``; returns the export (its metadata's ``weight_packing`` says which).

    A ``tokenizer.json`` in the folder travels in the export's ``tokenizer`` section, checked
    against the model's vocabulary first (:func:`tern_fpga.contracts.tokenizer.for_export`
    reads it back)."""
    checkpoint = Path(checkpoint)
    model = load_pretrained(checkpoint)
    model_config = model.config.to_dict()
    text_tokenizer = tokenizer.read_checkpoint_tokenizer(checkpoint, model_config)
    export = to_export(compile_model(model, params), {
        "source_checkpoint": str(checkpoint),
        "source_sha256": _checkpoint_digest(checkpoint),
    })
    if text_tokenizer is not None:
        export.sections[tokenizer.TOKENIZER_SECTION] = tokenizer.tokenizer_section(text_tokenizer)
    write_export(output, export, packing=packing)
    # As read_export would give it: the packing in the metadata (a board with its weights in
    # SDRAM keeps them in the export's packing, contracts/sdram_image.py).
    return dataclasses.replace(export, metadata={**export.metadata, "weight_packing": packing})
