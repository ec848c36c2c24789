"""The heap census: live objects counted by type in IOLoop slices, published as a snapshot.

``heap`` runs censuses on a schedule; ``slicer`` keeps each slice within its budget;
``selection`` bounds the exported types; ``typenames`` names them; ``handler_states`` and
``watchlist`` are what the census measures besides types; ``snapshot`` is what it publishes.
Scrapes never come here: the collectors read the published snapshot.
"""

from .snapshot import CensusSnapshot

__all__ = ["CensusSnapshot"]
