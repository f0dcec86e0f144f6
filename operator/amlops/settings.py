"""Operator settings from the environment (``AMLOPS_*``), so one image runs against Azure or the emulator."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMLOPS_", extra="ignore")

    arm_endpoint: str = Field(default="https://management.azure.com", description="ARM base URL.")
    authority_host: str | None = Field(
        default=None,
        description="Microsoft identity platform host for service principals in credentials Secrets (sovereign "
        "clouds, the emulator). Empty: Azure public cloud's.",
    )
    ca_bundle: Path | None = Field(default=None, description="CA file to trust for Azure endpoints (emulator).")
    static_token: str | None = Field(
        default=None,
        description="A fixed bearer token instead of DefaultAzureCredential: local emulators only.",
        repr=False,
    )
    batch_endpoint_template: str = Field(
        default="https://{account}.{location}.batch.azure.com",
        description="Batch account URL when a BatchCompute does not set spec.endpoint.",
    )
    blob_endpoint: str | None = Field(default=None, description="Blob service URL override (Azurite).")
    storage_endpoint_suffix: str = Field(
        default="core.windows.net",
        description="The cloud's storage suffix (a datastore's account URL is https://{account}.blob.{suffix}): "
        "azure-ai-ml's, for ParallelJobs on an AmlCompute. Another cloud's, or the emulator's.",
    )
    blob_connection_string: str | None = Field(
        default=None,
        description="Storage connection string for ParallelJobs without spec.storageCredentials (its account key "
        "signs the SAS URLs the nodes use), for the namespaces of shared_storage_namespaces only.",
        repr=False,
    )
    shared_storage_namespaces: str = Field(
        default="",
        description="Namespaces (comma-separated globs, '*' for all) whose ParallelJobs may use "
        "blob_connection_string; they reach only containers named <namespace> or <namespace>-*. Empty: none may "
        "(StorageNotAllowed).",
    )
    arm_budget_share: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="The share of each ARM request bucket (reads, writes, deletes of a subscription and principal) "
        "amlops may use: it paces its requests to that share of the refill and leaves the rest of the bucket to the "
        "team's other tools (Terraform, the portal, CI).",
    )
    arm_buckets: str = Field(
        default="",
        pattern=r"^((reads|writes|deletes)=[0-9.]+:[0-9.]+(,|$))*$",
        description="ARM request buckets to assume instead of the documented ones (reads 250 + 25/s, writes and "
        "deletes 200 + 10/s), as <kind>=<size>:<refill per second>, comma-separated: for a subscription with other "
        "limits. Larger buckets are also learned from ARM's answers.",
    )

    @field_validator("arm_buckets")
    @classmethod
    def _buckets(cls, value: str) -> str:
        from amlops.azure.pacing import buckets  # the parser lives with the pacer; the pattern only shapes it

        buckets(value)  # a bucket that says nothing usable stops the operator at start, not at its first request
        return value

    # Shared per-workspace poller: fast while anything converges, slow when steady.
    poll_floor_seconds: float = 2.0
    poll_ceiling_seconds: float = 60.0
    requeue_seconds: float = 5.0
    stalled_recheck_seconds: float = 300.0
    lro_polling_interval: float = 0.0
    vm_size_cache_seconds: float = 3600.0
    # kopf's per-object workers: how many objects are handled at once, and how long an idle worker waits for
    # its object's next event before giving its slot to another object (handlers/app.py says why).
    worker_limit: int = Field(default=400, ge=1)
    worker_idle_seconds: float = Field(default=0.5, gt=0)
    nodes_report_limit: int = 50
    default_credentials_secret: str | None = Field(
        default=None, description="Secret name used when a resource sets no spec.credentials (per namespace)."
    )
    operator_identity_namespaces: str = Field(
        default="",
        description="Namespaces (comma-separated glob patterns, '*' for all) whose resources may act with the "
        "operator's own Azure identity when they name no credentials. Empty: none, every namespace brings its own.",
    )
