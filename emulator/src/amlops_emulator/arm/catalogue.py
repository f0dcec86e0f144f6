"""The VM sizes an AmlCompute can use, their families, and the default core quotas of a location.

Sizes and figures follow the public Azure size tables (vCPUs, memory, GPUs, temp disk); prices are indicative
pay-as-you-go Linux prices in USD. Quotas are per VM family for dedicated cores, plus subscription totals for
dedicated and low-priority cores, as the ML RP reports them in ``/usages`` and ``/quotas``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OS_VHD_SIZE_MB = 1047552


@dataclass(frozen=True)
class VmFamily:
    name: str  # vmSizes' spelling, e.g. "standardDSv2Family"
    display: str  # the dedicated usage row's localizedValue, e.g. "Standard DSv2 Family Cluster Dedicated vCPUs"
    default_quota: int  # dedicated vCPUs per subscription and location

    @property
    def usage_name(self) -> str:
        """``name.value`` of the family's usage rows: capitalised, "StandardDSv2Family" (ListUsages.json)."""
        return self.name[:1].upper() + self.name[1:]

    @property
    def low_priority_display(self) -> str:
        return self.display.replace("Dedicated", "LowPriority")

    @property
    def quota_label(self) -> str:
        """How the ML RP names the family in a quota failure: "Standard NC family" (the message quoted in
        dotnet/machinelearning-modelbuilder#2140)."""
        return f"Standard {self.name.removeprefix('standard').removesuffix('Family')} family"


@dataclass(frozen=True)
class VmSize:
    name: str
    family: str
    vcpus: int
    memory_gb: float
    gpus: int
    max_resource_volume_mb: int
    premium_io: bool
    price: float  # USD per hour, dedicated Linux
    low_priority_capable: bool = True
    supported: bool = True  # False: a size a client asked for that no cluster here can have (see unsupported())

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "vCPUs": self.vcpus,
            "gpus": self.gpus,
            "osVhdSizeMB": OS_VHD_SIZE_MB,
            "maxResourceVolumeMB": self.max_resource_volume_mb,
            "memoryGB": self.memory_gb,
            "lowPriorityCapable": self.low_priority_capable,
            "premiumIO": self.premium_io,
            "estimatedVMPrices": {
                "billingCurrency": "USD",
                "unitOfMeasure": "OneHour",
                "values": [
                    {"retailPrice": self.price, "osType": "Linux", "vmTier": "Standard"},
                    {"retailPrice": round(self.price * 0.2, 4), "osType": "Linux", "vmTier": "LowPriority"},
                ],
            },
            "supportedComputeTypes": ["AmlCompute", "ComputeInstance"],
        }


FAMILIES: tuple[VmFamily, ...] = (
    VmFamily("standardDv2Family", "Standard Dv2 Family Cluster Dedicated vCPUs", 24),
    VmFamily("standardDSv2Family", "Standard DSv2 Family Cluster Dedicated vCPUs", 24),
    VmFamily("standardDSv3Family", "Standard DSv3 Family Cluster Dedicated vCPUs", 24),
    VmFamily("standardESv3Family", "Standard ESv3 Family Cluster Dedicated vCPUs", 24),
    VmFamily("standardFSv2Family", "Standard FSv2 Family Cluster Dedicated vCPUs", 24),
    VmFamily("standardNCFamily", "Standard NC Family Cluster Dedicated vCPUs", 24),
    VmFamily("standardNCSv3Family", "Standard NCSv3 Family Cluster Dedicated vCPUs", 12),
    VmFamily("standardNDSFamily", "Standard NDS Family Cluster Dedicated vCPUs", 0),
    VmFamily("standardNDSv2Family", "Standard NDSv2 Family Cluster Dedicated vCPUs", 0),
)

SIZES: tuple[VmSize, ...] = (
    VmSize("Standard_D1_v2", "standardDv2Family", 1, 3.5, 0, 51200, False, 0.057),
    VmSize("Standard_D2_v2", "standardDv2Family", 2, 7.0, 0, 102400, False, 0.114),
    VmSize("Standard_D3_v2", "standardDv2Family", 4, 14.0, 0, 204800, False, 0.229),
    VmSize("Standard_D4_v2", "standardDv2Family", 8, 28.0, 0, 409600, False, 0.458),
    VmSize("Standard_D5_v2", "standardDv2Family", 16, 56.0, 0, 819200, False, 0.916),
    VmSize("Standard_DS1_v2", "standardDSv2Family", 1, 3.5, 0, 7168, True, 0.057),
    VmSize("Standard_DS2_v2", "standardDSv2Family", 2, 7.0, 0, 14336, True, 0.114),
    VmSize("Standard_DS3_v2", "standardDSv2Family", 4, 14.0, 0, 28672, True, 0.229),
    VmSize("Standard_DS4_v2", "standardDSv2Family", 8, 28.0, 0, 57344, True, 0.458),
    VmSize("Standard_DS5_v2", "standardDSv2Family", 16, 56.0, 0, 114688, True, 0.916),
    VmSize("Standard_D2s_v3", "standardDSv3Family", 2, 8.0, 0, 16384, True, 0.096),
    VmSize("Standard_D4s_v3", "standardDSv3Family", 4, 16.0, 0, 32768, True, 0.192),
    VmSize("Standard_D8s_v3", "standardDSv3Family", 8, 32.0, 0, 65536, True, 0.384),
    VmSize("Standard_D16s_v3", "standardDSv3Family", 16, 64.0, 0, 131072, True, 0.768),
    VmSize("Standard_E4s_v3", "standardESv3Family", 4, 32.0, 0, 65536, True, 0.252),
    VmSize("Standard_E8s_v3", "standardESv3Family", 8, 64.0, 0, 131072, True, 0.504),
    VmSize("Standard_E16s_v3", "standardESv3Family", 16, 128.0, 0, 262144, True, 1.008),
    VmSize("Standard_F4s_v2", "standardFSv2Family", 4, 8.0, 0, 32768, True, 0.169),
    VmSize("Standard_F8s_v2", "standardFSv2Family", 8, 16.0, 0, 65536, True, 0.338),
    VmSize("Standard_F16s_v2", "standardFSv2Family", 16, 32.0, 0, 131072, True, 0.677),
    VmSize("Standard_NC6", "standardNCFamily", 6, 56.0, 1, 389120, False, 0.90),
    VmSize("Standard_NC12", "standardNCFamily", 12, 112.0, 2, 696320, False, 1.80),
    VmSize("Standard_NC24", "standardNCFamily", 24, 224.0, 4, 1474560, False, 3.60),
    VmSize("Standard_NC6s_v3", "standardNCSv3Family", 6, 112.0, 1, 344064, True, 3.06),
    VmSize("Standard_NC12s_v3", "standardNCSv3Family", 12, 224.0, 2, 688128, True, 6.12),
    VmSize("Standard_NC24s_v3", "standardNCSv3Family", 24, 448.0, 4, 1376256, True, 12.24),
    VmSize("Standard_ND6s", "standardNDSFamily", 6, 112.0, 1, 344064, True, 2.07),
    VmSize("Standard_ND12s", "standardNDSFamily", 12, 224.0, 2, 688128, True, 4.14),
    VmSize("Standard_ND24s", "standardNDSFamily", 24, 448.0, 4, 1376256, True, 8.28),
    VmSize("Standard_ND40rs_v2", "standardNDSv2Family", 40, 672.0, 8, 2969600, True, 22.03),
)

TOTAL_DEDICATED_CORES = 100
TOTAL_LOW_PRIORITY_CORES = 100

_SIZES_BY_KEY = {size.name.lower(): size for size in SIZES}
_FAMILIES_BY_KEY = {family.name.lower(): family for family in FAMILIES}


def find_size(name: str) -> VmSize | None:
    """Sizes are matched case-insensitively: clients send "STANDARD_NC6" as often as "Standard_NC6"."""
    return _SIZES_BY_KEY.get(name.lower())


def unsupported(name: str) -> VmSize:
    """A size the service does not offer here. Azure accepts the PUT and fails the create asynchronously with
    InvalidPropertyValue (Azure/MachineLearningNotebooks#1169), so the request must be kept until then."""
    return VmSize(name, "", 0, 0.0, 0, 0, False, 0.0, supported=False)


def find_family(name: str) -> VmFamily | None:
    return _FAMILIES_BY_KEY.get(name.lower())
