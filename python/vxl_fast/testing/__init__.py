"""Development tools, not imported by the runtime: :mod:`.tiny` (a tiny random checkpoint and a
sample video; the ``demo`` commands use it) and :mod:`.rehearsal` (a request on fake device tensors)."""
