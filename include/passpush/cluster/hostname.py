"""``[core] hostname_callable`` for workers that share one machine.

Task instances record the hostname of the worker that ran them. Two workers on one machine would
both report the machine's name; each cluster worker sets ``PASSPUSH_WORKER_HOSTNAME`` instead, so
the UI and the REST API show which worker ran what. Elsewhere it is the machine's FQDN, as by default.
"""

from __future__ import annotations

import os
import socket

WORKER_HOSTNAME_ENV = "PASSPUSH_WORKER_HOSTNAME"


def worker_hostname() -> str:
    return os.environ.get(WORKER_HOSTNAME_ENV) or socket.getfqdn()
