"""``python -m gpufl …`` is ``gpufl …``."""

import sys

from gpufl.client.cli import main

sys.exit(main())
