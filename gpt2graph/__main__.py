"""``python -m gpt2graph``: the command line, as the ``gpt2graph`` script runs it."""

import sys

from .cli import main

sys.exit(main())
