"""DDR3 behind LiteDRAM's ``ECP5DDRPHY`` (issue 17): the board's configuration (:mod:`.config`)
and the core generated at build time from the locked LiteDRAM (:mod:`.litedram_ddr3`)."""
