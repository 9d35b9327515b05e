"""The checkout under test, and the `faust` command of the Python running the tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAUST = str(Path(sys.executable).with_name("faust"))
