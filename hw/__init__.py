"""Amaranth gateware of the accelerator; each unit has a NumPy golden model in ``sim.golden``."""
