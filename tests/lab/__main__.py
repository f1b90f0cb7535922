"""Run the lab by hand: ``python -m tests.lab [--mode netns|loopback]``.

Prints the lab as JSON (hosts, key and known_hosts paths) and keeps it up
until SIGINT or SIGTERM, then tears it down. Handy for benchmarks and for
poking at the servers with ``ssh -i KEY -o UserKnownHostsFile=FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import cast

from .lab import Lab, Mode


async def serve(mode: Mode) -> None:
    async with Lab(mode=mode) as lab:
        description = {
            "mode": "netns" if lab.uses_netns else "loopback",
            "startup_seconds": round(lab.startup_seconds, 3),
            "dir": str(lab.dir),
            "known_hosts": str(lab.known_hosts),
            "client_key": str(lab.client_key),
            "user": lab.user,
            "slow_user": lab.slow_user,
            "hosts": lab.inventory(),
        }
        json.dump(description, sys.stdout, indent=2)
        print(flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    parser.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto")
    asyncio.run(serve(cast(Mode, parser.parse_args().mode)))


if __name__ == "__main__":
    main()
