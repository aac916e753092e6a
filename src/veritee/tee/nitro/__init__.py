"""AWS Nitro Enclaves: the COSE_Sign1 attestation document, its verification, claims."""
