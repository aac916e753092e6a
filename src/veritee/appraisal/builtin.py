"""Built-in policies shipped with veritee (package data)."""

from __future__ import annotations

import functools
from importlib import resources

from veritee.appraisal.policy import RegoPolicy
from veritee.errors import PolicyError

DEFAULT_ATTESTATION_POLICY_ID = "default_cpu"
DEFAULT_DEVICE_POLICY_ID = "default_gpu"
RESOURCE_POLICY_ID = "resource-policy"


@functools.lru_cache(maxsize=16)
def load(name: str) -> str:
    return resources.files("veritee.appraisal").joinpath("policies", f"{name}.rego").read_text()


def default_attestation_policy() -> RegoPolicy:
    return RegoPolicy.parse(DEFAULT_ATTESTATION_POLICY_ID, load("default_cpu"))


def default_device_policy() -> RegoPolicy:
    return RegoPolicy.parse(DEFAULT_DEVICE_POLICY_ID, load("default_gpu"))


def default_resource_policy() -> RegoPolicy:
    return RegoPolicy.parse(RESOURCE_POLICY_ID, load("affirming"))


PRESETS = ("default_cpu", "default_gpu", "affirming", "allow_simulated")

# Attestation policy presets (``veritee policy preset NAME``): name -> packaged file.
POLICY_PRESETS = {
    "allow-all-reference-values": "preset_allow_all_reference_values",
    "dev": "preset_dev",
    "strict-production": "preset_strict_production",
}


def preset(name: str) -> RegoPolicy:
    """A preset as a parsed attestation policy (id ``default_cpu``, ready to set)."""
    if name not in POLICY_PRESETS:
        raise PolicyError(
            f"no preset named {name!r}", hint="presets: " + ", ".join(POLICY_PRESETS)
        )
    return RegoPolicy.parse(DEFAULT_ATTESTATION_POLICY_ID, load(POLICY_PRESETS[name]))
