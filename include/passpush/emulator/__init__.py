"""Local PassKit emulator: a real HTTP server that behaves like PassKit's members REST API.

Used by tests, the demo and benchmarks. ``server`` is the aiohttp app (``passpush-emulator``),
``state`` the in-memory model it serves, ``control`` a synchronous client and a subprocess
launcher. Importing this package does not import aiohttp.
"""

from passpush.emulator.control import (
    EmulatorControl,
    EmulatorError,
    EmulatorProcess,
    make_jwt,
    start_emulator,
)

__all__ = ["EmulatorControl", "EmulatorError", "EmulatorProcess", "make_jwt", "start_emulator"]
