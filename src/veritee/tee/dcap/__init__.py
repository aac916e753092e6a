"""Intel DCAP, shared by TDX and SGX: quote, PCK chain, QE report, collateral evaluation."""
