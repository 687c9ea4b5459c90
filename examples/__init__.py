"""Examples: a processor module to serve and a producer that feeds it (see each file)."""
