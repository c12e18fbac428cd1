"""The online half of sspcab-inspect: settings, model registry, dynamic batcher, image codecs, routes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sspcab-inspect")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
