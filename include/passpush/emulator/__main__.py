"""``python -m passpush.emulator``: run the PassKit emulator (same flags as ``passpush-emulator``)."""

from passpush.emulator.server import main

raise SystemExit(main())
