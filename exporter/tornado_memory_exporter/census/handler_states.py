"""``<ns>_handlers_alive{handler,state}``: live Tornado ``RequestHandler`` instances by class.

A handler normally dies right after its request finishes. ``state="finished"`` instances that
stay alive and grow are a classic Tornado leak (a handler kept in a global list, a closure
registered as a callback, a reference cycle that has not been collected yet). The counts come
from the heap census (``census.py``), which checks ``_finished`` only on handler instances.
"""

from __future__ import annotations

import tornado.web

ACTIVE = "active"
FINISHED = "finished"


def handler_classes(base: type = tornado.web.RequestHandler) -> set[type]:
    """``base`` and every class derived from it that is alive now (``__subclasses__``, so
    classes the application dropped are not kept alive)."""
    found = {base}
    pending = [base]
    while pending:
        for sub in type.__subclasses__(pending.pop()):
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


