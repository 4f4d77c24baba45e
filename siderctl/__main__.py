"""``python -m siderctl``."""

from siderctl.cli import main

if __name__ == "__main__":
    main()
