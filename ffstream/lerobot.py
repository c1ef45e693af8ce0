"""`ffstream.lerobot`, kept for code outside ffstream (install, uninstall).

The module lives in ffstream.datasets.lerobot; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .datasets import lerobot as _home

sys.modules[__name__] = _home
