"""The instruction the README's ``otto --lab lab.json run deploy --version 1.2`` runs.

A lab file names this module in ``"settings": {"instructions":
["myproject.instructions"]}``; the lab file's folder is put on ``sys.path``,
so ``myproject/`` sits beside it.
"""

from __future__ import annotations

import otto
from otto import RunResult


@otto.instruction()
async def deploy(version: str) -> bool:
    """Install release VERSION on every web server.

    Args:
        version: the release to install, as in ``--version 1.2``.
    """
    results = await otto.run_on_all_hosts(
        [f"mkdir -p /tmp/otto-deploy/{version}", f"ls -d /tmp/otto-deploy/{version}"],
        pattern="^web",
    )
    for name, result in sorted(results.items()):
        print(f"{name}: {result.status if isinstance(result, RunResult) else result}")
    return bool(results) and all(
        isinstance(result, RunResult) and result.is_ok for result in results.values()
    )
