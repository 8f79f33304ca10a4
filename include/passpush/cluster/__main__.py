"""``python -m passpush.cluster``: see ``passpush.cluster.cli``."""

from passpush.cluster.cli import main

raise SystemExit(main())
