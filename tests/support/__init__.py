"""What many test files need, written once: Kubernetes objects (``objects``: apply a manifest, read a condition,
wait for one with a deadline). Processes (the operator, the emulator) are the test bed's: ``amlops_testbed``."""
