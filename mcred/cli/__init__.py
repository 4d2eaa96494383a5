"""The ``mcred`` command line: one module per area, each with ``register(app)``."""
