"""An ASGI app that builds the campaign page's FastAPI app on its first request.

Airflow imports every plugin in every process that loads plugins (scheduler, dag-processor,
workers, each task), but only the API server serves ``fastapi_apps``. Mounting this instead of
the app itself keeps the plugin file cheap to import: FastAPI routes, Airflow's API security
and psycopg are imported by the API server only, when the page is first asked for.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

Scope = dict[str, Any]


class DeferredApp:
    def __init__(self, factory: str) -> None:
        """``factory`` is "module:function" returning the ASGI app."""
        self.factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    module, _, function = self.factory.partition(":")
                    self._app = getattr(importlib.import_module(module), function)()
        return self._app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
