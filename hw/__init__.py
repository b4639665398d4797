"""Amaranth gateware of the accelerator: the units, the core, the host link and the board top
level. Each unit's NumPy golden function is in ``tern_fpga.sim.golden``."""

if __name__ != "tern_fpga.hw":
    # The folder hw/ is the subpackage tern_fpga.hw: imported by its bare name it would
    # give a second copy of every module (two parameter classes, two error types).
    raise ImportError(f"import tern_fpga.hw, not {__name__}: the folder hw/ is installed "
                      f"as tern_fpga.hw (run `make setup`, or `pip install -e .`)")

