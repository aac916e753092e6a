# veritee default attestation policy for devices (GPUs and NVSwitches), evaluated
# for each additional-evidence device (submods gpu0.., switch0..), Trustee-style.
# The device certificate chain and the SPDM signature were verified before this
# runs; the firmware must still match the owner's reference values.
package policy

import rego.v1

default executables := 33

default hardware := 97

executables := 3 if {
	input.nvidia
	input.nvidia.config.driver_version in query_reference_value("nvidia_driver_version")
	input.nvidia.config.vbios_version in query_reference_value("nvidia_vbios_version")
}

hardware := 2 if {
	input.nvidia
	lower(input.nvidia.arch) in {"hopper", "blackwell", "ls10"}
}

trust_claims := {
	"executables": executables,
	"hardware": hardware,
}
