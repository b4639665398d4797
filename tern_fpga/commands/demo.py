"""``make demo``: the shipped demo model end to end on the virtual board, with no board.

1. export ``checkpoints/demo`` for the ``demo`` preset (``build/demo/demo.tern``);
2. generate with the golden model (the integer contract);
3. build the board's top level with Verilator and serve its UART on a local TCP port;
4. load the export through the host driver and verify it by the chip's CRCs;
5. generate on the virtual board, check every token against the golden model's, and report
   tokens/s measured at the host, cycles per token from the chip's counters and tokens/s
   projected at the bitstream's Fmax.

``--core dataflow`` runs issue 15's dataflow core instead (virtual board only; the export
rewritten into its segmented weight layout before the load).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tern_fpga.contracts import paths, tokenizer
from tern_fpga.contracts.errors import TernError
from tern_fpga.contracts.export_format import EXPORT_KIND
from tern_fpga.contracts.output_paths import check_output_file
from tern_fpga.contracts.params import preset
from tern_fpga.contracts.sdram_image import preferred_packing
from tern_fpga.contracts.segmented_layout import default_segments
from tern_fpga.host.session import (
    CORES,
    connect,
    export_for_core,
    generate_text,
    load,
    resolve_core,
)
from tern_fpga.sim.golden.model import golden_from_file

REPOSITORY = paths.SOURCE_ROOT
PROMPT = "The for statement is used to"


def step(message: str):
    print(f"\n== {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tern_fpga.commands.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", choices=("demo", "micro", "stdlib"),
                        help="the shipped model and its preset (default demo; stdlib: the "
                             "20.6 M-weight model with its weights in a simulated SDRAM, "
                             "preloaded, about 3 s of simulation a token)")
    parser.add_argument("--core", choices=CORES, default=None,
                        help="the virtual board's core: 'instruction' (the committed one, "
                             "the default for the demo preset) or 'dataflow' (issue 15's "
                             "dataflow core)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("-n", "--tokens", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TernError as error:
        print(f"tern demo: error: {error}", file=sys.stderr)
        return 1


def run(args) -> int:
    from tern_fpga.quant.export import export_checkpoint  # here, not at the top: loads torch

    params = preset(args.preset)
    checkpoint = paths.shipped_checkpoint(args.preset)
    output = paths.BUILD / "demo" / f"{args.preset}.tern"
    output.parent.mkdir(parents=True, exist_ok=True)
    check_output_file(output, EXPORT_KIND, option=None)
    prompt = tokenizer.encode(args.prompt)

    step(f"1. export {checkpoint.relative_to(REPOSITORY)} for the {params.name} preset")
    export = export_checkpoint(checkpoint, params, output,
                               packing=preferred_packing(params))
    print(f"wrote {output.relative_to(REPOSITORY)} ({output.stat().st_size:,} bytes)")

    step("2. the golden model (NumPy, bit-exact integer contract)")
    _, golden = golden_from_file(output)
    start = time.perf_counter()
    expected = golden.generate(prompt, args.tokens)
    seconds = time.perf_counter() - start
    print(args.prompt + tokenizer.decode(expected))
    print(f"[golden model: {(len(prompt) - 1 + args.tokens) / seconds:.0f} steps/s on this CPU]")

    core = resolve_core(params, args.core)
    if core == "dataflow":
        export = export_for_core(export, core)
        print(f"the dataflow core's layout: up to {default_segments(params)} rows a weight "
              f"word, {len(export.sections['weights']):,} bytes of weights")
    step(f"3. the virtual board: the {'board' if core == 'instruction' else 'dataflow core'}"
         f"'s top level in Verilator, UART on a local port")
    with connect("sim", params, export=export, core=core) as (board, virtual):
        identity = board.identity
        print(f"identified: board 0x{identity.board_id:04x}, build 0x{identity.build_id:08x}, "
              f"parameters hash 0x{identity.params_hash:016x}")
        step("4. load the export and verify it by the chip's CRCs")
        loaded = load(board, export)
        status = board.status()
        print(f"loaded {loaded['bytes']:,} bytes in {loaded['seconds']:.1f} s "
              f"(wall clock, simulation included); the chip counted "
              f"{status.bytes_received:,} bytes received")
        step("5. generate on the virtual board")
        sys.stdout.write(args.prompt)
        report = generate_text(board, export, prompt, args.tokens)
    if report.generated != expected:
        first = next(i for i, (a, b) in enumerate(zip(report.generated, expected)) if a != b)
        raise TernError(f"the virtual board's token {first} is {report.generated[first]}, the "
                        f"golden model's {expected[first]}: the RTL and the golden model differ")
    print(f"all {len(expected)} tokens equal the golden model's")
    step("speed")
    for line in report.lines("virtual board: simulation speed, not the chip's"):
        print("  " + line)
    stats = virtual.stats
    if stats.get("cycles_per_second"):
        print(f"  simulated: {stats['cycles_per_second'] / 1e6:.2f} M cycles/s of Verilator "
              f"({stats['cycles']:,} cycles in all)")
    if stats.get("cycles_per_cpu_second"):
        # On a shared machine the wall-clock figure counts time other programs ran.
        print(f"  per CPU second of the simulation: {stats['cycles_per_cpu_second'] / 1e6:.2f} M "
              f"cycles (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
