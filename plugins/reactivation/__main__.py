"""``python -m reactivation``: same as the ``reactivation`` console command."""

import sys

from reactivation.cli import main

sys.exit(main())
