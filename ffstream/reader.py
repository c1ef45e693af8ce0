"""`ffstream.reader`, kept for code outside ffstream (video_info, read_frames).

The module lives in ffstream.codec.reader; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .codec import reader as _home

sys.modules[__name__] = _home
