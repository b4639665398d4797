"""NumPy golden models of the integer datapath (no Amaranth imports here)."""
