"""NVIDIA GPUs and NVSwitches: SPDM measurement reports, device chains, RIM comparison."""
