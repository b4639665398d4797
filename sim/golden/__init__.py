"""The NumPy golden model of the integer datapath: one golden function per hardware block and
the whole-model interpreter (``model``). No Amaranth imports here."""
