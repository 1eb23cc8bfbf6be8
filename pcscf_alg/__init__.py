"""pcscf-alg: a 3GPP IMS P-CSCF (IMS-ALG) with an embedded IMS Access Gateway.

Implements end-to-access-edge (e2ae) media security per 3GPP TS 33.328 §7.1.2, 7.2.1 and 7.3.1.
"""

__version__ = "0.1.0"

# Serve the mypyc build of the SDP/e2ae modules when it matches their sources (see _accel).
from pcscf_alg import _accel

_accel.install()
