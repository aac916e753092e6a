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
