from .chain.wiring import open_context  # noqa: F401  (the chain context: see contexts.py)
