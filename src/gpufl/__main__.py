"""``python -m gpufl …`` is ``gpufl …``."""

import sys

from gpufl.cli import main

sys.exit(main())
