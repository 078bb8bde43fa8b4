"""expwatch: configuration, CLI and the composition root."""

from importlib.metadata import PackageNotFoundError, version

from .app import App, open_app
from .config import Settings, load_config

try:
    __version__ = version("expwatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["App", "Settings", "__version__", "load_config", "open_app"]
