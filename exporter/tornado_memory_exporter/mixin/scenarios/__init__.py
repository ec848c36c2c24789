"""promtool unit tests generated from the rules: ``plan`` (series and expectation helpers),
``build`` (one scenario per alert: silent before ``for:``, exact after) and ``traps`` (shapes
that must stay silent)."""
