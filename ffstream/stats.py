"""`ffstream.stats`, kept for code outside ffstream (aggregate_stats, as the guide shows).

The module lives in ffstream.capture.stats; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .capture import stats as _home

sys.modules[__name__] = _home
