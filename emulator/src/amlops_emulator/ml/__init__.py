"""Azure Machine Learning's workspace data plane in the emulator: runs on AmlCompute clusters (execution.py)."""
