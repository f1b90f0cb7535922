"""Ways of moving bytes to and from a shell: one module per kind of link."""

from otto.transports.base import Receiver, ShellTransport

__all__ = ["Receiver", "ShellTransport"]
