"""AMD SEV-SNP: attestation report format, verification against AMD's roots, claims."""
