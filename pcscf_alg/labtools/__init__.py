"""Small lab helpers: an S-CSCF stand-in for demos and tests."""
