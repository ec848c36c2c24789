"""promtool unit tests generated from the rules: ``plan`` (series and expectation helpers),
``build`` (one scenario per alert: silent before ``for:``, exact after), ``reachable`` (the
object-level alerts on a census that tells garbage apart) and ``traps`` (shapes that must stay
silent)."""
