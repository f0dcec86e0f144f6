"""Local stand-in for Azure that the real SDK clients talk HTTP to.

``arm``: the ``Microsoft.MachineLearningServices`` ARM surface (HTTPS, bearer auth) with a cluster simulator;
``batch``: the Azure Batch data plane (shared-key or bearer auth) with a node agent that really runs tasks.
Blob storage is not emulated here: tests and the demo use Azurite.

Only ``amlops.cli`` and the tests import this package (import-linter contract in pyproject.toml).
"""
