"""Storage drivers. Reference drivers live in sub-packages; discovery is in ``loader``."""
