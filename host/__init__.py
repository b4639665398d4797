"""Host side: driver, transports and meters."""
