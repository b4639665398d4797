"""``tern golden``: generate text with the bit-exact NumPy golden model of the accelerator."""

from __future__ import annotations

import sys
import time


def register(subparsers):
    parser = subparsers.add_parser(
        "golden", help="generate with the bit-exact integer golden model",
        description="Run an exported model on the NumPy golden model, the integer contract "
                    "that the RTL and the board are checked against, and print the text as it "
                    "is generated.")
    parser.add_argument("export", help="a .tern file from `tern export`")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--prompt", help="prompt text (byte-level models)")
    group.add_argument("--ids", help="prompt token ids, comma separated")
    parser.add_argument("-n", "--tokens", type=int, default=64, help="tokens to generate")
    parser.add_argument("--trace", metavar="FILE",
                        help="write the per-instruction trace (pc, instruction, first values) "
                             "of the last token to FILE")
    parser.set_defaults(func=run)


def run(args) -> int:
    from quant.export import golden_from_file
    from tern import tokenizer
    from tern.errors import TernError

    export, golden = golden_from_file(args.export, trace=bool(args.trace))
    if args.prompt is not None:
        tokenizer.check_byte_level(export.model_config)
        prompt, show = tokenizer.encode(args.prompt), True
    else:
        try:
            prompt, show = [int(v) for v in args.ids.split(",")], False
        except ValueError:
            raise TernError(f"--ids takes comma-separated integers, not {args.ids!r}") from None
    if args.tokens < 1:
        raise TernError(f"-n must be at least 1, not {args.tokens}")

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
