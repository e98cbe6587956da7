"""``python -m pytest_clover.cli``: the ``clover`` command."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
