"""``python -m otto``: the ``otto`` command.

The plain ``otto [OPTIONS] host NAME run CMD...`` runs without importing the
Typer app (see :mod:`otto.cli.fast`); every other line goes to it.
"""

import sys


def main() -> None:
    """The ``otto`` console script."""
    from otto.cli.fast import run_plain

    code = run_plain(sys.argv[1:])
    if code is not None:
        # The objects alive now are left out of the collection Python makes as it
        # ends: it would only walk them all (everything the imports built) to free
        # nothing, which costs a short command ~10 ms. Exit handlers, flushing the
        # streams and closing files still happen as usual.
        import gc

        gc.freeze()
        sys.exit(code)
    from otto.cli.app import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()
