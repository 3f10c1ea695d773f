"""``python -m freshet.cli``: the same as the ``freshet`` command."""

from freshet.cli import main

if __name__ == "__main__":
    main()
