"""``tern golden``: generate text with the bit-exact NumPy golden model of the accelerator."""

from __future__ import annotations

import sys
import time

from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import check_compiled, read_export
from tern_fpga.contracts.output_paths import OutputKind, add_force_argument, check_output_file
from tern_fpga.sim.golden.model import golden_from_export

# What --trace writes: a line "  pc  instruction" and one "-> values" a record.
TRACE_KIND = OutputKind.text_matching("a golden-model trace", rb" *\d+  [a-z_]+\b")


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
    add_force_argument(parser, "an existing --trace FILE that is not a trace")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.trace:
        check_output_file(args.trace, TRACE_KIND, force=args.force, inputs=[args.export],
                          option="--trace")
    export = read_export(args.export)
    check_compiled(export, args.export)
    text_tokenizer = tokenizer.for_export(export, args.export)
    prompt = tokenizer.prompt_from_arguments(args, export.model_config, text_tokenizer)
    # Text for a --prompt, token ids for --ids (what the user asked in is what comes out).
    stream = text_tokenizer.stream(prompt) if args.prompt is not None else None
    if text_tokenizer is None:
        print(tokenizer.no_tokenizer_note(export.model_config, args.export), file=sys.stderr)

    def on_token(token):
        sys.stdout.write(stream.feed(token) if stream else f"{token},")
        sys.stdout.flush()

    try:
        golden = golden_from_export(export, trace=bool(args.trace))
        if stream:
            sys.stdout.write(args.prompt)
        start = time.perf_counter()
        golden.generate(prompt, args.tokens, on_token=on_token)
        if stream:
            sys.stdout.write(stream.finish())
    except (ArithmeticError, IndexError, KeyError, ValueError) as error:
        # The file is intact and its sections fit together (checked above), but what its
        # program does with them the golden model finds out only as it runs.
        raise TernError(f"{args.export}: the golden model cannot run this export "
                        f"({type(error).__name__}: {error}): its program or constants are "
                        f"inconsistent although its CRCs match (edited, or written by another "
                        f"tern?); re-export it with `tern export`") from None
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
