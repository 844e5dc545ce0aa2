"""``python -m videofrom3d`` is the ``videofrom3d`` command."""

import sys

from videofrom3d.cli import main

sys.exit(main())
