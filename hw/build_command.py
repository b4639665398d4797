"""``tern build``: a bitstream and its manifest for a board, with the open toolchain."""

from __future__ import annotations


def register(subparsers):
    from hw.board import BOARDS

    parser = subparsers.add_parser(
        "build", help="build a bitstream for a dev board (Yosys + nextpnr, no vendor tools)",
        description="Elaborate the accelerator for a board and a preset, synthesise and place "
                    "and route it with Yosys and nextpnr (YoWASP builds), and write "
                    "bitstreams/<board>-<preset>.bit|.bin with a JSON manifest (parameters "
                    "and hash, build id, Fmax, utilisation, tool versions). Fails when timing "
                    "is not met. Takes minutes; the tools' WebAssembly is compiled once per "
                    "cache (YOWASP_CACHE_DIR).")
    parser.add_argument("--board", required=True, choices=sorted(BOARDS))
    parser.add_argument("--preset", help="accelerator preset (default: the board's own: "
                        + ", ".join(f"{b.name} -> {b.default_preset}" for b in BOARDS.values())
                        + ")")
    parser.add_argument("--baud", type=int, help="UART rate (default 3000000)")
    parser.add_argument("-o", "--output-dir", default="bitstreams",
                        help="where the bitstream and manifest go (default bitstreams/)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from hw.board import board
    from hw.build import build_bitstream

    preset_name = args.preset or board(args.board).default_preset
    manifest = build_bitstream(args.board, preset_name, output_dir=args.output_dir,
                               baud=args.baud)
    fmax = ", ".join(f"{clock}: {mhz:.1f} MHz" for clock, mhz in manifest["fmax_mhz"].items())
    print(f"wrote {args.output_dir}/{manifest['bitstream']} (build id {manifest['build_id']}); "
          f"Fmax {fmax} against {manifest['clock_mhz']:.1f} MHz")
    for cell, (used, available) in sorted(manifest["utilisation"].items()):
        if used:
            print(f"  {cell:<16} {used:>7} / {available:<7} ({100 * used / available:.0f} %)")
    return 0
