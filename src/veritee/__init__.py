"""veritee: first-party remote attestation service and key broker for confidential computing."""

__version__ = "0.1.0"
