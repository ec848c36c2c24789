"""HTTP: the protected handler base and its credentials, the metrics handler (negotiation,
rendering, caching) and the server that runs our endpoints on a port of their own."""
