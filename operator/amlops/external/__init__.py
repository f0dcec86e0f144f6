"""One ExternalClient per kind (observe / create / update / delete, each idempotent and non-blocking).

Pure mappings live beside each client: spec → Azure body, Azure → status, the up-to-date diff.
May import ``amlops.azure`` (the SDK adapters), ``amlops.reconcile``, ``amlops.status`` and ``amlops.api``.
"""
