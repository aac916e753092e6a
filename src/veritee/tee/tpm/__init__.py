"""TPM 2.0: structures, quote verification, credential activation, EK certificates,
UEFI event log replay and claims, IMA measurement lists, and the KBS ``tpm`` evidence."""
