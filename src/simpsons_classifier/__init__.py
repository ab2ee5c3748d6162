"""Train, evaluate, explain and serve an image classifier for The Simpsons characters."""

from .config import Config, ConfigError

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "__version__"]
