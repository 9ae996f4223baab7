"""``python -m ctcnet`` = the ``ctcnet`` command."""

import sys

from ctcnet.cli import main

sys.exit(main())
