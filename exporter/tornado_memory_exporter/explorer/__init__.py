"""The leak explorer: from "this type grows" to "allocated here, kept alive by that".

Off by default. ``Config(explorer_enabled=True, auth_token=...)`` serves, under
``Config.explorer_path`` (``/debug/memory``), a page and a JSON API showing the latest heap
censuses (types by growth, handlers, watched objects, pools), the reference chains that keep a
sample of a chosen type alive (walked back to a module global, class attribute, frame, IOLoop
callback or registered root, in slices that never hold the loop beyond the census budget), and
allocation sites from an on-demand tracemalloc window that stops by itself.

Modules: ``history`` (ring buffer of censuses), ``backrefs`` (chain walk), ``describe`` (what a
chain link shows), ``allocations`` (tracemalloc window), ``core`` (the state of one exporter),
``api`` (HTTP handlers and the security checks), ``static/`` (the page).
"""

from .api import explorer_routes
from .core import Explorer

__all__ = ["Explorer", "explorer_routes"]
