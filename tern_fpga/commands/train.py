"""``tern train``: quantisation-aware training of a preset model (see
:mod:`tern_fpga.quant.train`)."""

from __future__ import annotations

from tern_fpga.quant.presets import PRESETS


def register(subparsers):
    parser = subparsers.add_parser(
        "train", help="train a byte-level ternary model from scratch",
        description="Train a preset's byte-level MatMul-free model from scratch on the shipped "
                    "corpus (quantisation-aware), then write the checkpoint, training_log.json "
                    "and MODEL_CARD.md into the output folder.")
    parser.add_argument("--preset", required=True, metavar="NAME",
                        help=f"model size and recipe: {', '.join(PRESETS)}")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output folder (must be empty unless --force)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="windows per step (default: preset's)")
    parser.add_argument("--seq-len", type=int, help="bytes per window (default: preset's)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batches")
    parser.add_argument("--device", default="cpu", metavar="{cpu,cuda,auto}",
                        help="where to train; auto takes CUDA when present (default: cpu)")
    parser.add_argument("--compile", action="store_true",
                        help="run training steps through torch.compile (for GPUs: about 5x "
                             "faster on an H200 after ~45 s of compilation)")
    parser.add_argument("--tf32", action="store_true",
                        help="TF32 matrix products in the training steps on a CUDA GPU (for "
                             "d >= 512; evaluations and the saved model stay float32)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite an earlier run's files in the output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tern_fpga.quant.train import train  # here, not at the top: loads torch

    log = train(args.preset, args.output, steps=args.steps, device=args.device, seed=args.seed,
                batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, force=args.force,
                compile=args.compile, tf32=args.tf32, progress=not args.quiet)
    print(f"wrote {args.output}: {log['steps']} steps in {log['wall_seconds']:.1f} s "
          f"({log['steps_per_second']:.2f} steps/s), held-out "
          f"{log['heldout_bits_per_byte']:.3f} bits/byte")
    return 0
