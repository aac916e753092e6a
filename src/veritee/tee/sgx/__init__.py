"""Intel SGX: quote v3 enclave report body, claims, simulator."""
