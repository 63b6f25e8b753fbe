"""``python -m seg_bench``: the ``seg-bench`` command, without its console script."""

import sys

from seg_bench.cli import main

sys.exit(main())
