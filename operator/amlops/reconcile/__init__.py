"""The kind-agnostic reconcile engine and its vocabulary (outcomes, errors, policies). No kopf, no Azure SDK."""
