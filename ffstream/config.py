"""`ffstream.config`, kept for code outside ffstream (CODECS, GENERIC_OPTIONS, the configs).

The module lives in ffstream.codec.config; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .codec import config as _home

sys.modules[__name__] = _home
