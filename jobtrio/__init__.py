"""jobtrio: a distributed, fault-tolerant background-job processor on trio.

The names a processor module needs are importable from here::

    from jobtrio import JobContext, Registry
"""

from .processors import JobContext, Registry

__all__ = ["JobContext", "Registry"]
__version__ = "0.1.0"
