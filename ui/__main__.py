"""`python -m ui`: the same as `rag serve`."""

import sys

from rag.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
