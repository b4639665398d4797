"""Where an export's sections go in the accelerator's memories, as 32-bit words.

The host driver streams these words over the link; the core's whole-model test writes them
through the same memory port. ``TABLES`` is read only on chip (the units hold the tables as
ROMs built from the parameters): the host reads it back and compares it with the export's
tables instead of writing it.
"""

from __future__ import annotations

import numpy as np

from tern_fpga.contracts.protocol import MemorySpace, table_offsets, to_words

__all__ = ["WRITTEN_SECTIONS", "memory_image", "table_image"]

# Section name -> the memory space it fills from word 0.
WRITTEN_SECTIONS = {
    "program": MemorySpace.PROGRAM,
    "weights": MemorySpace.WEIGHTS,
    "vector_init": MemorySpace.VECTOR,
    "embeddings": MemorySpace.EMBEDDING,
    "constants": MemorySpace.CONSTANTS,
}


def memory_image(sections: dict) -> list[tuple[str, MemorySpace, np.ndarray]]:
    """``(section, space, words)`` for every section the host writes, in load order."""
    return [(name, space, to_words(sections[name])) for name, space in WRITTEN_SECTIONS.items()]


def table_image(sections: dict, params) -> np.ndarray:
    """The ``TABLES`` space's words as the chip must hold them for this export."""
    offsets = table_offsets(params)
    words = np.zeros(offsets["rsqrt_table"] + len(sections["rsqrt_table"]), dtype=np.uint32)
    for name, offset in offsets.items():
        values = to_words(np.asarray(sections[name], dtype=np.int32))
        words[offset:offset + len(values)] = values
    return words
