"""``python -m otto``: the ``otto`` command."""

from otto.cli.app import main

if __name__ == "__main__":
    main()
