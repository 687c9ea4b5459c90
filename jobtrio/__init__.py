"""jobtrio: a distributed, fault-tolerant background-job processor on trio.

The names a processor module needs are importable from here::

    from jobtrio import JobContext, Registry
"""

from .payloads import PayloadError
from .processors import JobContext, ProcessorHandle, Registry

__all__ = ["JobContext", "PayloadError", "ProcessorHandle", "Registry"]
__version__ = "0.1.0"
