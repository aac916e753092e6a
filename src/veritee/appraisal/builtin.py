"""Built-in policies shipped with veritee (package data)."""

from __future__ import annotations

import functools
from importlib import resources

from veritee.appraisal.policy import RegoPolicy

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
