"""``python -m kitsrt.cli``: the same as the ``kitsrt`` command."""

from kitsrt.cli.app import main

if __name__ == "__main__":  # pragma: no cover
    main()
