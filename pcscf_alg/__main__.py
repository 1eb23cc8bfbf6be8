"""`python -m pcscf_alg` is the same as the `pcscf-alg` command."""

import sys

from pcscf_alg.cli import main

sys.exit(main())
