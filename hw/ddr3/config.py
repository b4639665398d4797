"""The LiteDRAM configuration of the ECPIX-5 85F's DDR3, in the form ``litedram_gen``'s YAML
takes (the keys of ``litedram.gen``; same form as :mod:`tern_fpga.hw.sdram.config`).

The ECPIX-5 (LambdaConcept; amaranth-boards' ``ECPIX585Platform``, LFE5UM5G-85F-8BG554) carries
one x16 DDR3 chip, 512 MB: 8 banks x 32,768 rows x 1,024 columns. amaranth-boards' ``ddr3``
resource has 15 address lines, 3 bank lines, 16 dq, 2 dqs pairs, SSTL15 (1.5 V), no cs_n (tied
on the board) and no reset_n. That geometry is Micron's MT41K256M16 (4 Gbit x16), the module
litex-boards' ECPIX-5 target uses; LiteDRAM's ``MT41K256M16`` is its 1600 speed grade timings.

Clocks as litex-boards' ECPIX-5 target: the 100 MHz oscillator in, ``sys`` at 75 MHz, the
ECP5DDRPHY's ``sys2x`` (the DDR3 clock) at 150 MHz, 1:2 rate: DDR3-300, far below the chip's
speed grade and within what the ECP5's DDR I/O is known to close timing at.

One key is not ``litedram_gen``'s: ``sdram_module_trfc_ns``, the refresh cycle time tRFC in ns
that the child generator (:mod:`.litedram_ddr3`) gives the module in place of LiteDRAM's, in
every speed grade (``None`` or ``"None"`` keeps LiteDRAM's). LiteDRAM's ``MT41K256M16`` gives
tRFC as a clock count of its speed grade, 208 clocks (260 ns at DDR3-1600), and the controller
waits that many of *our* DRAM clocks: 1,387 ns at 150 MHz. Micron's 4 Gbit DDR3 (as JEDEC's
tRFC(min) for 4 Gbit) needs 260 ns whatever the clock.
"""

from __future__ import annotations

import copy

__all__ = ["ECPIX5_DDR3", "ddr3_config"]

ECPIX5_DDR3 = {
    # The LatticePlatform of the hw variant reads the device (PLL, I/O primitives).
    "device": "LFE5UM5G-85F-8BG554I",
    # No CPU: control/status registers on the wb_ctrl Wishbone slave (as for the SDR core).
    "cpu": "None",
    "memtype": "DDR3",
    "sdram_module": "MT41K256M16",
    # tRFC as a time (260 ns, the 4 Gbit part's), not LiteDRAM's 208 clocks of DDR3-1600.
    "sdram_module_trfc_ns": 260,
    "sdram_module_nb": 2,  # bytes of the data bus: 16 bits
    "sdram_rank_nb": 1,
    "sdram_phy": "ECP5DDRPHY",
    # The generated CRG's ECP5 PLL: clkin -> sys2x (2 x sys_clk_freq) and init.
    "input_clk_freq": 100e6,
    "sys_clk_freq": 75e6,
    "init_clk_freq": 25e6,
    # ECP5DDRPHY's extra command delay in its init (cmd_delay), litedram_gen's default.
    "cmd_delay": 0,
    # One native user port at the controller's width (BL8 x 16 bits = 128 bits a command).
    "user_ports": {"0": {"type": "native"}},
}


def ddr3_config(**changes) -> dict:
    """A copy of :data:`ECPIX5_DDR3` with ``changes`` applied (e.g. ``sys_clk_freq=50e6``).

    Raises
    ------
    KeyError
        If a change names a key that the configuration does not have.
    """
    config = copy.deepcopy(ECPIX5_DDR3)
    for key, value in changes.items():
        if key not in config:
            raise KeyError(f"{key!r} is not a key of the DDR3 configuration; "
                           f"the keys are {sorted(config)}")
        config[key] = value
    return config
