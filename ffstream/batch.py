"""`ffstream.batch`, kept for code outside ffstream (encode_png, BatchVideoEncoder).

The module lives in ffstream.capture.batch; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .capture import batch as _home

sys.modules[__name__] = _home
