"""amlops: a Kubernetes operator for Azure Machine Learning compute and parallel jobs.

Layers (outer to inner; an arrow is "may import"):

    cli ──> handlers (kopf glue) ──> external (one ExternalClient per kind) ──> azure (SDK adapters)
                 │                        │                                        │
                 └──────────────> reconcile (generic engine) ──> status ──> api (pydantic models)

``runtime`` runs on compute nodes and imports neither kopf nor the engine; ``emulator`` is the local Azure
stand-in and only ``cli`` (and tests) import it. import-linter enforces these rules (pyproject.toml).
"""

__version__ = "0.1.0"
