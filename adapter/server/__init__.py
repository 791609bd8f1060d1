"""The only code that touches the gateway's sockets."""

from .gateway import Gateway

__all__ = ["Gateway"]
