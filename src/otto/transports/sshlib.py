"""asyncssh, imported once and quietly.

asyncssh still names DSA keys, and the ``cryptography`` releases it runs on
warn about DSA at import time (``CryptographyDeprecationWarning``). That
warning is about asyncssh's code, not the user's: otto's users never see it.
Every module of otto that needs asyncssh imports it from here.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # By message and category name, so this works whether or not
    # cryptography still defines that class.
    warnings.filterwarnings("ignore", message=r".*\bDSA\b.*deprecated")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"asyncssh(\.|$)")
    import asyncssh
    import asyncssh.config
    from asyncssh.forward import SSHLocalPortForwarder
    from asyncssh.socks import SSHSOCKSForwarder

# The protocols asyncssh's own local and SOCKS forwards use (otto.hosts.forward
# keeps its own listener, so it can close every forwarded channel itself).
__all__ = ["SSHLocalPortForwarder", "SSHSOCKSForwarder", "asyncssh"]
