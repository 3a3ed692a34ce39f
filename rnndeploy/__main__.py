"""``python -m rnndeploy`` is the same as the ``rnndeploy`` console script."""

from rnndeploy.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    main()
