"""`ffstream.verify`, kept for code outside ffstream (verify).

The module lives in ffstream.inspection.judge; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .inspection import judge as _home

sys.modules[__name__] = _home
