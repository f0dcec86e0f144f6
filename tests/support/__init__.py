"""What many test files need, written once. ``objects``: apply a manifest, read a condition (through the
operator's own ``amlops.status``), wait for a condition or a deletion with a deadline. ``processes``: the typed
operator and emulator the fixtures hand out. ``tiers``: the check that every test carries its tier marker.
Starting and stopping processes is the test bed's job: ``amlops_testbed.start_operator``, ``terminate``."""
