"""The record contract's old import path: ``gpufl.events`` is ``gpufl.contract.events`` (the same module
object), so programs and notebooks written before the contract moved keep reading logs unchanged."""

import sys

from gpufl.contract import events as _events

sys.modules[__name__] = _events
