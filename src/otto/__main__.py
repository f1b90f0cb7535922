"""``python -m otto``: the ``otto`` command.

The plain ``otto [OPTIONS] host NAME run CMD...`` runs without importing the
Typer app (see :mod:`otto.cli.fast`); every other line goes to it.
"""

import sys


def main() -> None:
    """The ``otto`` console script."""
    from otto.cli.fast import exit_now, run_plain

    code = run_plain(sys.argv[1:])
    if code is not None:
        exit_now(code)  # streams flushed and exit handlers run; no module teardown
    from otto.cli.app import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()
