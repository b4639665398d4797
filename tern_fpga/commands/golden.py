"""``tern golden``: generate text with the bit-exact NumPy golden model of the accelerator."""

from __future__ import annotations

import sys
import time

from tern_fpga.contracts import tokenizer
from tern_fpga.sim.golden.model import golden_from_file


def register(subparsers):
    parser = subparsers.add_parser(
        "golden", help="generate with the bit-exact integer golden model",
        description="Run an exported model on the NumPy golden model, the integer contract "
                    "that the RTL and the board are checked against, and print the text as it "
                    "is generated.")
    parser.add_argument("export", help="a .tern file from `tern export`")
    tokenizer.add_prompt_arguments(parser)
    parser.add_argument("--trace", metavar="FILE",
                        help="write the per-instruction trace (pc, instruction, first values) "
                             "of the last token to FILE")
    parser.set_defaults(func=run)


def run(args) -> int:

    export, golden = golden_from_file(args.export, trace=bool(args.trace))
    prompt = tokenizer.prompt_from_arguments(args, export.model_config)
    show = args.prompt is not None

    def on_token(token):
        text = tokenizer.decode([token]) if show else f"{token},"
        sys.stdout.write(text)
        sys.stdout.flush()

    if show:
        sys.stdout.write(args.prompt)
    start = time.perf_counter()
    golden.generate(prompt, args.tokens, on_token=on_token)
    elapsed = time.perf_counter() - start
    print(f"\n[golden model: {len(prompt) + args.tokens - 1} steps in {elapsed:.2f} s, "
          f"{(len(prompt) + args.tokens - 1) / elapsed:.0f} tokens/s measured on this CPU]")
    if args.trace:
        _write_trace(args.trace, golden)
    return 0


def _write_trace(path, golden):
    with open(path, "w") as handle:
        for record in golden.trace:
            values = "" if record.written is None else \
                " ".join(str(v) for v in record.written[:8])
            handle.write(f"{record.pc:5d}  {record.instruction.text()}\n       -> {values}\n")
