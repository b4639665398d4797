"""Golden model of the dataflow core's vector-memory writes (``hw/dataflow/vector_writes.py``):
several units' addressed writes into one memory, each unit's in its order."""

from __future__ import annotations

import numpy as np

__all__ = ["arbitrated_memory"]


def arbitrated_memory(memory: np.ndarray, sources) -> np.ndarray:
    """``memory`` (words x lanes) after each source's writes, in each source's order.

    ``sources``: per source, a sequence of ``(address, data, mask)`` (``data`` one value a
    lane, ``mask`` bit ``j`` set where lane ``j`` is written). Any interleaving of the sources
    gives this memory as long as no two sources write one word, which the scoreboard's
    write-after-write rule ensures for the core; two sources that do are refused.

    Raises
    ------
    ValueError
        If two sources write the same word (naming it and them).
    """
    owner = {}
    result = np.array(memory, copy=True)
    for index, writes in enumerate(sources):
        for address, values, mask in writes:
            if owner.setdefault(address, index) != index:
                raise ValueError(f"sources {owner[address]} and {index} both write word "
                                 f"{address}: their order would decide the memory; give them "
                                 f"disjoint words (the scoreboard orders such writes)")
            lanes = [(mask >> lane) & 1 for lane in range(result.shape[1])]
            result[address] = np.where(lanes, values, result[address])
    return result
