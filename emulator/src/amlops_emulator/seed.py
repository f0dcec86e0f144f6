"""The emulator's seed file: which subscriptions, resource groups, workspaces and Batch accounts exist.

One file serves both halves of the emulator: the ARM half serves the workspaces (and knows the Batch accounts
so that attaching one as a compute target can be checked, case C16), the Batch half serves each account's data
plane. YAML or JSON::

    subscriptions:
      - id: 00000000-0000-0000-0000-000000000001
        resourceGroups:
          - name: rg-ml
            location: westeurope
            workspaces:
              - name: ws1            # location defaults to the resource group's
            batchAccounts:
              - name: amlopsbatch
                key: <base64 shared key>
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
DEFAULT_RESOURCE_GROUP = "rg-amlops"
DEFAULT_LOCATION = "westeurope"
DEFAULT_WORKSPACE = "ws-amlops"
DEFAULT_BATCH_ACCOUNT = "amlopsbatch"
# Not a secret: the well-known key of the local emulator's default Batch account (base64 of a fixed phrase).
DEFAULT_BATCH_KEY = base64.b64encode(b"amlops-emulator-batch-account-key").decode()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeedBatchAccount(_Strict):
    name: str = Field(pattern=r"^[a-z0-9]{3,24}$")
    key: str = DEFAULT_BATCH_KEY
    location: str | None = None


class SeedWorkspace(_Strict):
    name: str
    location: str | None = None


class SeedResourceGroup(_Strict):
    name: str
    location: str = DEFAULT_LOCATION
    workspaces: tuple[SeedWorkspace, ...] = ()
    batch_accounts: tuple[SeedBatchAccount, ...] = Field(default=(), alias="batchAccounts")


class SeedSubscription(_Strict):
    id: str
    resource_groups: tuple[SeedResourceGroup, ...] = Field(default=(), alias="resourceGroups")


class Seed(_Strict):
    subscriptions: tuple[SeedSubscription, ...] = ()

    @model_validator(mode="after")
    def _unique_batch_accounts(self) -> Seed:
        # Batch account names are globally unique per region in Azure; the emulator serves them by name alone.
        names = [a.name for _, _, a in self.batch_accounts()]
        if len(names) != len(set(names)):
            raise ValueError("batch account names must be unique across the seed")
        return self

    def workspaces(self) -> list[tuple[str, SeedResourceGroup, SeedWorkspace]]:
        return [(s.id, rg, ws) for s in self.subscriptions for rg in s.resource_groups for ws in rg.workspaces]

    def batch_accounts(self) -> list[tuple[str, SeedResourceGroup, SeedBatchAccount]]:
        return [(s.id, rg, acct) for s in self.subscriptions for rg in s.resource_groups for acct in rg.batch_accounts]

    @classmethod
    def default(cls) -> Seed:
        """One subscription, resource group, workspace and Batch account: what the demo and tests use."""
        return cls.model_validate(
            {
                "subscriptions": [
                    {
                        "id": DEFAULT_SUBSCRIPTION,
                        "resourceGroups": [
                            {
                                "name": DEFAULT_RESOURCE_GROUP,
                                "location": DEFAULT_LOCATION,
                                "workspaces": [{"name": DEFAULT_WORKSPACE}],
                                "batchAccounts": [{"name": DEFAULT_BATCH_ACCOUNT}],
                            }
                        ],
                    }
                ]
            }
        )

    @classmethod
    def load(cls, path: Path) -> Seed:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.model_validate(data or {})
