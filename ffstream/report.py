"""`ffstream.report`, kept for code outside ffstream (write_report).

The module lives in ffstream.inspection.report; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .inspection import report as _home

sys.modules[__name__] = _home
