"""Async adapters over the real Azure SDKs (ML management, Batch, Blob): clients, credentials, throttle
budget, ARM error classification and the shared per-workspace pollers. The only package besides
``external`` that imports ``azure.*``.
"""
