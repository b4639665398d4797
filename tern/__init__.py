"""tern: an FPGA accelerator co-design toolkit for MatMul-free (ternary) language models."""

__version__ = "0.1.0"
