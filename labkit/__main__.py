"""``python -m labkit ...``: see ``labkit.tools.cli``."""
import sys

from labkit.tools.cli import main

sys.exit(main())
