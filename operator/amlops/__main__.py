"""``python -m amlops`` is the same as the ``amlops`` console script."""

from amlops.cli import main

raise SystemExit(main())
