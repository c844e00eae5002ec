"""python -m matcher add|import|list|remove|recognize|scan: see matcher/cli.py."""

import sys

from matcher.cli import main

sys.exit(main())
