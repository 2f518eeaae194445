"""``python -m seqops``: the same as the ``seqops`` command."""

from seqops.cli import main

raise SystemExit(main())
