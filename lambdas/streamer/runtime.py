"""Per-process state of a function: settings, the app, clients. Built lazily.

Nothing is created at import, so importing an entry point never fails or
touches the network; the first invocation builds what it needs once and
later invocations of the same Lambda process reuse it.
"""

from __future__ import annotations

import threading
from functools import cached_property

from streamer import metrics
from streamer.config import Settings
from streamer.handlers import App, load_app
from streamer.logs import configure_logging
from streamer.models import bind_models
from streamer.tracing import enable_tracing


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        configure_logging(settings.log_level, settings.log_debug_sample_rate)
        metrics.configure(settings.stage, settings.region)
        enable_tracing(settings.tracing)
        bind_models(
            settings.connections_table,
            settings.requests_table,
            settings.subscriptions_table,
            settings.region,
            regions=settings.regions,
            endpoints=settings.table_endpoints,
        )

    @cached_property
    def app(self) -> App:
        return load_app(self.settings.app_module)

    @cached_property
    def delivery(self):  # -> Delivery; imported here to keep botocore off cold paths
        from streamer import store
        from streamer.delivery import Delivery

        return Delivery(self.settings.region, on_gone=store.forget_connection)


_current: Runtime | None = None
_lock = threading.Lock()


def current() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(Settings.from_env())
        return _current


def reset() -> None:
    """Forget the process's runtime so the next call re-reads the environment."""
    global _current
    with _lock:
        _current = None
    # Imported here: the breaker needs the store, which cold paths do without.
    from streamer import breaker

    breaker.reset()
