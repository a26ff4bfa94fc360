"""``python -m adamop``: the same as the ``adamop`` command."""
from .cli import main

raise SystemExit(main())
