"""tern: an FPGA accelerator co-design toolkit for MatMul-free (ternary) language models.

One import root. Its layers, bottom to top (``docs/architecture.md``; import-linter checks them):
``contracts`` (parameters, ISA, numerics, protocol, export format, weight layout, boards, paths,
errors), then ``quant`` and ``hw`` beside ``sim.golden``, then ``sim.rtl``, then ``host``, then
``explore`` (bench, sweep, power, schedule), then ``commands`` (the `tern` command line).
"""

__version__ = "0.2.0"
