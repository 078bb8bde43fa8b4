"""expwatch: configuration, CLI and the composition root.

The public names are imported on first use, so `expwatch --help`, `--version` and shell
completion start without loading the store, the watcher or the MCP server.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App, open_app
    from .config import Settings, load_config

try:
    __version__ = version("expwatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {"App": ".app", "open_app": ".app", "Settings": ".config", "load_config": ".config"}

__all__ = ["App", "Settings", "__version__", "load_config", "open_app"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
