"""CLI: ``python -m cdarec.cli`` runs the command line (the background training uses it)."""

import sys

from cdarec.cli import main

sys.exit(main())
