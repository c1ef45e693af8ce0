"""`ffstream.transcode`, kept for code outside ffstream (transcode, as the guide shows).

The module lives in ffstream.datasets.transcode; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .datasets import transcode as _home

sys.modules[__name__] = _home
