"""The ULX3S's SDR SDRAM behind LiteDRAM (issue 16): the core generated at build time from the
locked LiteDRAM (:mod:`.litedram_core`), the initialisation sequence that our gateware drives in
place of a CPU (:mod:`.init_sequence`, :mod:`.init_fsm`) and the Amaranth wrapper around both
(:mod:`.controller`). docs/sdram.md describes init, refresh, the SDRAM clock and the port."""
