"""Vendor object identifiers used in endorsement certificates."""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

# AMD VCEK/VLEK extensions (AMD "Versioned Chip Endorsement Key" specification).
_AMD = "1.3.6.1.4.1.3704.1"
AMD_STRUCT_VERSION = ObjectIdentifier(f"{_AMD}.1")
AMD_PRODUCT_NAME = ObjectIdentifier(f"{_AMD}.2")
AMD_BL_SPL = ObjectIdentifier(f"{_AMD}.3.1")
AMD_TEE_SPL = ObjectIdentifier(f"{_AMD}.3.2")
AMD_SNP_SPL = ObjectIdentifier(f"{_AMD}.3.3")
AMD_SPL_4 = ObjectIdentifier(f"{_AMD}.3.4")
AMD_SPL_5 = ObjectIdentifier(f"{_AMD}.3.5")
AMD_SPL_6 = ObjectIdentifier(f"{_AMD}.3.6")
AMD_SPL_7 = ObjectIdentifier(f"{_AMD}.3.7")
AMD_UCODE_SPL = ObjectIdentifier(f"{_AMD}.3.8")
AMD_FMC_SPL = ObjectIdentifier(f"{_AMD}.3.9")
AMD_HWID = ObjectIdentifier(f"{_AMD}.4")
AMD_CSP_ID = ObjectIdentifier(f"{_AMD}.5")

# Intel SGX PCK certificate extensions ("Intel SGX PCK Certificate and CRL Profile").
_SGX = "1.2.840.113741.1.13.1"
SGX_EXTENSIONS = ObjectIdentifier(_SGX)
SGX_PPID = f"{_SGX}.1"
SGX_TCB = f"{_SGX}.2"
SGX_TCB_PCESVN = f"{_SGX}.2.17"
SGX_TCB_CPUSVN = f"{_SGX}.2.18"
SGX_PCEID = f"{_SGX}.3"
SGX_FMSPC = f"{_SGX}.4"
SGX_TYPE = f"{_SGX}.5"
SGX_PLATFORM_INSTANCE_ID = f"{_SGX}.6"
SGX_CONFIGURATION = f"{_SGX}.7"
SGX_CONFIG_DYNAMIC_PLATFORM = f"{_SGX}.7.1"
SGX_CONFIG_CACHED_KEYS = f"{_SGX}.7.2"
SGX_CONFIG_SMT_ENABLED = f"{_SGX}.7.3"


def sgx_tcb_component(index: int) -> str:
    """OID of SGX TCB component ``index`` (1..16) inside the TCB extension."""
    if not 1 <= index <= 16:
        raise ValueError("SGX TCB component index is 1..16")
    return f"{_SGX}.2.{index}"
