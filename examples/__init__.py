"""Runnable examples, kept out of the installed package: `make demo` (`python -m examples.demo`)
and the S-CSCF stand-in it puts behind the P-CSCF (`examples.scscf`)."""
