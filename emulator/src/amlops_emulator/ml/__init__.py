"""The Azure ML workspace surface beside computes, as azure-ai-ml's ``MLClient`` uses it, and the runs on its
AmlCompute clusters.

``storage`` is the workspace's storage account (an Azurite the emulator runs), ``assets`` the in-memory registry
of code, environment and data versions, ``routes`` their ``Microsoft.MachineLearningServices`` routes, added to
the ARM dispatcher beside the compute routes; ``execution`` runs work on the clusters (``distribution`` the
environment Azure ML gives each process).
"""
