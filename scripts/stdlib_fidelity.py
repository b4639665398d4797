"""Golden-vs-float fidelity of the ``stdlib`` checkpoint, by ``tern_fpga.explore.fidelity``'s
method, on held-out text of the stdlib corpus and the ``large`` accelerator preset (the only
preset whose memories hold 20.6 M weights until an SDRAM preset exists).

    python scripts/stdlib_fidelity.py [CHECKPOINT] [--tokens 2048] [--prompts 16 --length 128]

Prints one JSON object: ``compare`` (teacher-forced over held-out bytes: greedy agreement,
bits per byte of both models, ...) and ``continuation`` (the float64 model continues held-out
prompts greedily, the golden model must choose the same tokens).
"""

import argparse
import dataclasses
import json
import time

from tern_fpga.contracts.params import preset
from tern_fpga.explore.fidelity import compare, greedy_continuation
from tern_fpga.quant.checkpoint import load_pretrained
from tern_fpga.quant.data import load_splits
from tern_fpga.quant.presets import get_preset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="checkpoints/stdlib")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    heldout = load_splits(get_preset("stdlib").corpus_path).heldout
    params = preset("large")
    start = time.perf_counter()
    result = compare(load_pretrained(args.checkpoint), params, heldout[:args.tokens].tolist())
    compared = time.perf_counter()
    # The prompts of fidelity.continuation_prompts, taken from this corpus's held-out text.
    prompts = [heldout[1000 + 997 * index:1024 + 997 * index].tolist()
               for index in range(args.prompts)]
    continuation = greedy_continuation(load_pretrained(args.checkpoint), params, prompts,
                                       args.length)
    print(json.dumps({
        "checkpoint": args.checkpoint, "accelerator_preset": params.name,
        "compare": dataclasses.asdict(result), "compare_seconds": compared - start,
        "continuation": dataclasses.asdict(continuation),
        "continuation_seconds": time.perf_counter() - compared,
    }, indent=1))


if __name__ == "__main__":
    main()
