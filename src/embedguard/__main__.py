"""``python -m embedguard``: the ``embedguard`` command line (see :mod:`embedguard.cli`)."""

from embedguard.cli import main

raise SystemExit(main())
