"""What the package knows of itself, in a module that imports nothing of it: its version and
where it is installed (to tell its own frames and allocations from the application's)."""

import os

__version__ = "0.1.0"

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
"""The package's folder, ending with a separator (so ``startswith`` never matches a sibling)."""
