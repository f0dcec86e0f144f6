"""The ``Microsoft.MachineLearningServices`` ARM surface of the emulator (api-version 2020-08-01 and later).

``routes`` (the REST surface) over ``state`` (workspaces, computes, operations, quotas) and ``compute`` (bodies
in and out); ``simulator`` runs each AmlCompute's nodes on the virtual clock; ``catalogue`` holds VM sizes and
quotas; ``middleware`` is ARM's front door (request ids, bearer auth, ``throttle`` buckets, ``errors``);
``controls`` adds the simulator's ``/_emulator/arm/`` knobs. ``amlops_emulator.server`` assembles the app.
"""
