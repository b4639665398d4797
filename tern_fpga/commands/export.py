"""``tern export``: compile a checkpoint for an accelerator preset into one ``.tern`` file."""

from __future__ import annotations

import sys
from pathlib import Path

from tern_fpga.contracts import tokenizer
from tern_fpga.contracts.export_format import EXPORT_KIND, WEIGHT_PACKINGS
from tern_fpga.contracts.output_paths import add_force_argument, check_output_file
from tern_fpga.contracts.params import PRESETS, preset
from tern_fpga.contracts.sdram_image import preferred_packing


def register(subparsers):
    parser = subparsers.add_parser(
        "export", help="compile a checkpoint into a .tern file for an accelerator preset",
        description="Compile a Hugging Face HGRNBit checkpoint folder (config.json + weights) "
                    "for an accelerator preset: ternarise and pack the weights in the matrix "
                    "unit's word layout, lower the model to the accelerator's program, and "
                    "write one checked .tern file (see docs/export-format.md). The folder's "
                    "tokenizer.json, if any, travels in the file, so `tern golden` and `tern "
                    "generate` print text with it (byte-level models need none).")
    parser.add_argument("checkpoint", help="checkpoint folder, e.g. checkpoints/demo")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS),
                        help="accelerator parameters to compile for")
    parser.add_argument("-o", "--output", required=True,
                        help="the .tern file to write (its folder must exist; an existing file "
                             "is replaced only if it is a .tern export)")
    parser.add_argument("--packing", choices=WEIGHT_PACKINGS, default=None,
                        help="weight storage: 2 bits a weight as block RAM holds them, or 1.6 "
                             "bits (5 per byte, base 3), which a board with the weights in "
                             "SDRAM also keeps in its memory (fewer words to stream: faster); "
                             "default: base3 for such a preset (stdlib), else 2bit")
    add_force_argument(parser, "an existing -o file that is not a .tern export")
    parser.set_defaults(func=run)


def run(args) -> int:
    # here, not at the top: loads torch
    from tern_fpga.quant.export import checkpoint_files, export_checkpoint

    check_output_file(args.output, EXPORT_KIND, force=args.force,
                      inputs=checkpoint_files(args.checkpoint))
    params = preset(args.preset)
    packing = args.packing or preferred_packing(params)
    export = export_checkpoint(args.checkpoint, params, args.output, packing=packing)
    size = Path(args.output).stat().st_size
    config = export.model_config
    text_tokenizer = tokenizer.for_export(export, args.output)
    print(f"wrote {args.output} ({size:,} bytes): {config['num_hidden_layers']} layers, "
          f"d={config['hidden_size']}, vocab {config['vocab_size']}, preset {params.name}, "
          f"{len(export.sections['program']) // 4} instructions, "
          f"{export.metadata['weight_words']} weight words of {params.ternary_lanes}; "
          f"tokenizer: {text_tokenizer.name if text_tokenizer else 'none (token ids)'}")
    note = tokenizer.missing_tokenizer_note(args.checkpoint, config)
    if note:
        print(note, file=sys.stderr)
    return 0
