"""`ffstream.capacity`, kept for code outside ffstream (plan, as the guide shows).

The module lives in ffstream.machine.capacity; the old name is the very same module object, so an
attribute read or set through either name is the same attribute.
"""

import sys

from .machine import capacity as _home

sys.modules[__name__] = _home
