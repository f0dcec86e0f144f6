"""The Azure ML workspace surface azure-ai-ml's ``MLClient`` uses beside computes: datastores, asset versions.

``storage`` is the workspace's storage account (an Azurite the emulator runs), ``assets`` the in-memory registry
of code, environment and data versions, ``routes`` their ``Microsoft.MachineLearningServices`` routes, added to
the ARM dispatcher beside the compute routes.
"""
