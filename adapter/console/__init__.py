"""The operator console (``qmt-adapter console``): a live view of one gateway in the terminal,
or the same app in a browser (``--web``, served by textual-serve)."""

from .app import ConsoleApp, Confirm
from .model import ConsoleModel

__all__ = ["ConsoleApp", "Confirm", "ConsoleModel"]
