"""``python -m aggregame.cli``: the same as the ``aggregame`` command."""

import sys

from aggregame.cli import main

sys.exit(main())
