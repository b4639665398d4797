"""Simulation: the NumPy golden model of the integer datapath (``golden``, no Amaranth) and
the RTL run in Verilator with cocotb (``rtl``: testbenches, the virtual board)."""

if __name__ != "tern_fpga.sim":
    # The folder sim/ is the subpackage tern_fpga.sim: imported by its bare name it would
    # give a second copy of every module (two parameter classes, two error types).
    raise ImportError(f"import tern_fpga.sim, not {__name__}: the folder sim/ is installed "
                      f"as tern_fpga.sim (run `make setup`, or `pip install -e .`)")

