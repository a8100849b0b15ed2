"""``python -m registry``: the same command as the ``registry`` script."""

from registry.cli import main

if __name__ == "__main__":
    main()
