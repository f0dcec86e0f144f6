"""Code that runs on compute nodes (the ParallelJob driver). Standard library and blob client only:
no kopf, no reconcile engine.
"""
