# veritee preset "strict-production" (veritee policy preset strict-production).
#
# Affirm only when ALL of these hold, and deny naming what failed otherwise:
#   * every reference value below is loaded and matches: the launch
#     measurement or firmware/boot measurements (executables) and the TCB
#     versions (hardware), as in allow-all-reference-values;
#   * debug is off, and on SEV-SNP the migration agent is not allowed;
#   * Intel's TCB status is UpToDate (TDX, SGX);
#   * the evidence states that it is not from a simulator.
# A reference value that is not loaded is a denial naming it, never a warning.
package policy

import rego.v1

# Which reference value each evidence type is judged by, the AR4SI claim it
# supports and the claim it is compared with (a list of claims matches when the
# evidence's claim is one of them; any other value must be equal).
bindings := {
	"snp": {
		"snp_launch_measurement": ["executables", ["snp", "measurement"]],
		"snp_bootloader": ["hardware", ["snp", "reported_tcb_bootloader"]],
		"snp_microcode": ["hardware", ["snp", "reported_tcb_microcode"]],
		"snp_snp_svn": ["hardware", ["snp", "reported_tcb_snp"]],
		"snp_tee_svn": ["hardware", ["snp", "reported_tcb_tee"]],
	},
	"az-snp-vtpm": {
		"snp_launch_measurement": ["executables", ["az-snp-vtpm", "measurement"]],
		"snp_bootloader": ["hardware", ["az-snp-vtpm", "reported_tcb_bootloader"]],
		"snp_microcode": ["hardware", ["az-snp-vtpm", "reported_tcb_microcode"]],
		"snp_snp_svn": ["hardware", ["az-snp-vtpm", "reported_tcb_snp"]],
		"snp_tee_svn": ["hardware", ["az-snp-vtpm", "reported_tcb_tee"]],
		"snp_pcr11": ["executables", ["az-snp-vtpm", "tpm", "pcr11"]],
	},
	"tdx": {
		"mr_td": ["executables", ["tdx", "quote", "body", "mr_td"]],
		"rtmr_1": ["executables", ["tdx", "quote", "body", "rtmr_1"]],
		"rtmr_2": ["executables", ["tdx", "quote", "body", "rtmr_2"]],
		"xfam": ["configuration", ["tdx", "quote", "body", "xfam"]],
	},
	"az-tdx-vtpm": {
		"mr_td": ["executables", ["az-tdx-vtpm", "quote", "body", "mr_td"]],
		"xfam": ["configuration", ["az-tdx-vtpm", "quote", "body", "xfam"]],
		"tdx_pcr11": ["executables", ["az-tdx-vtpm", "tpm", "pcr11"]],
	},
	"sgx": {
		"mr_enclave": ["executables", ["sgx", "body", "mr_enclave"]],
		"mr_signer": ["executables", ["sgx", "body", "mr_signer"]],
	},
	"tpm": {
		"tpm_pcr00": ["executables", ["tpm", "pcr00"]],
		"tpm_pcr04": ["executables", ["tpm", "pcr04"]],
		"tpm_pcr07": ["configuration", ["tpm", "pcr07"]],
		"trusted_aks": ["instance-identity", ["tpm", "ak_public"]],
	},
	"nvidia": {
		"nvidia_driver_version": ["executables", ["nvidia", "config", "driver_version"]],
		"nvidia_vbios_version": ["executables", ["nvidia", "config", "vbios_version"]],
	},
}

# Every lookup by literal name, so tools (veritee policy test, the audit log)
# can tell which reference values this policy consults.
expected := {
	"snp_launch_measurement": query_reference_value("snp_launch_measurement"),
	"snp_bootloader": query_reference_value("snp_bootloader"),
	"snp_microcode": query_reference_value("snp_microcode"),
	"snp_snp_svn": query_reference_value("snp_snp_svn"),
	"snp_tee_svn": query_reference_value("snp_tee_svn"),
	"tpm_pcr00": query_reference_value("tpm_pcr00"),
	"tpm_pcr04": query_reference_value("tpm_pcr04"),
	"tpm_pcr07": query_reference_value("tpm_pcr07"),
	"snp_pcr11": query_reference_value("snp_pcr11"),
	"tdx_pcr11": query_reference_value("tdx_pcr11"),
	"trusted_aks": query_reference_value("trusted_aks"),
	"mr_td": query_reference_value("mr_td"),
	"rtmr_1": query_reference_value("rtmr_1"),
	"rtmr_2": query_reference_value("rtmr_2"),
	"xfam": query_reference_value("xfam"),
	"mr_enclave": query_reference_value("mr_enclave"),
	"mr_signer": query_reference_value("mr_signer"),
	"nvidia_driver_version": query_reference_value("nvidia_driver_version"),
	"nvidia_vbios_version": query_reference_value("nvidia_vbios_version"),
}

tees contains tee if {
	some tee, _ in bindings
	input[tee]
}

# Claims of the evidence that the policy does not know (so it cannot judge them).
unknown_evidence contains k if {
	some k, v in input
	is_object(v)
	not k in {"init_data_claims", "runtime_data_claims"}
	not bindings[k]
}

consulted contains name if {
	some tee in tees
	some name, _ in bindings[tee]
}

missing contains name if {
	some name in consulted
	expected[name] == null
}

rv_matches(name, path) if {
	want := expected[name]
	is_array(want)
	object.get(input, path, null) in want
}

rv_matches(name, path) if {
	want := expected[name]
	want != null
	not is_array(want)
	object.get(input, path, null) == want
}

judged contains b[0] if {
	some tee in tees
	some _, b in bindings[tee]
}

# A claim fails when any of its reference values is missing or does not match.
rv_failed contains b[0] if {
	some tee in tees
	some name, b in bindings[tee]
	not rv_matches(name, b[1])
}

# -- beyond reference values ----------------------------------------------------

unsafe contains "snp: debugging is allowed (policy_debug_allowed)" if {
	input.snp
	not input.snp.policy_debug_allowed == false
}

unsafe contains "snp: a migration agent is allowed (policy_migrate_ma)" if {
	input.snp
	not input.snp.policy_migrate_ma == false
}

unsafe contains "az-snp-vtpm: debugging is allowed (policy_debug_allowed)" if {
	input["az-snp-vtpm"]
	not input["az-snp-vtpm"].policy_debug_allowed == false
}

unsafe contains "az-snp-vtpm: a migration agent is allowed (policy_migrate_ma)" if {
	input["az-snp-vtpm"]
	not input["az-snp-vtpm"].policy_migrate_ma == false
}

unsafe contains "tdx: the TD runs in debug mode (td_attributes.debug)" if {
	input.tdx
	not input.tdx.td_attributes.debug == false
}

unsafe contains "az-tdx-vtpm: the TD runs in debug mode (td_attributes.debug)" if {
	input["az-tdx-vtpm"]
	not input["az-tdx-vtpm"].td_attributes.debug == false
}

# SGX ATTRIBUTES.DEBUG is bit 1 of the first (little-endian) byte of the flags.
unsafe contains "sgx: the enclave runs in debug mode (attributes.flags DEBUG)" if {
	input.sgx
	nibble := substring(object.get(input.sgx.body, "attributes.flags", "ff"), 1, 1)
	nibble in {"2", "3", "6", "7", "a", "b", "e", "f"}
}

stale contains msg if {
	some tee in {"tdx", "az-tdx-vtpm", "sgx"}
	input[tee]
	status := object.get(input[tee], "tcb_status", "not reported")
	status != "UpToDate"
	msg := concat("", [tee, ": Intel TCB status is ", status, ", not UpToDate"])
}

simulated contains tee if {
	some tee in tees
	input[tee].simulated == true
}

unstated contains tee if {
	some tee in tees
	not is_boolean(input[tee].simulated)
}

extra_failed contains "configuration" if count(unsafe) > 0

extra_failed contains "hardware" if count(stale) > 0

extra_failed contains "hardware" if count(simulated) > 0

extra_failed contains "hardware" if count(unstated) > 0

all_judged contains claim if some claim in judged

all_judged contains "hardware" if count(tees) > 0

all_judged contains "configuration" if count(tees) > 0

fail_score := {"executables": 96, "hardware": 97, "configuration": 96, "instance-identity": 97}

trust_claims[claim] := 2 if {
	some claim in all_judged
	not claim in rv_failed
	not claim in extra_failed
}

trust_claims[claim] := fail_score[claim] if {
	some claim in rv_failed
}

trust_claims[claim] := fail_score[claim] if {
	some claim in extra_failed
	not claim in rv_failed
}

trust_claims["hardware"] := 97 if count(tees) == 0

reasons contains msg if some msg in unsafe

reasons contains msg if some msg in stale

reasons contains msg if {
	some tee in simulated
	msg := concat("", [tee, ": simulated TEE, refused in production"])
}

reasons contains msg if {
	some tee in unstated
	msg := concat("", [tee, ": the evidence does not state whether it is simulated: refused"])
}

reasons contains msg if {
	count(tees) == 0
	msg := concat("", [
		"this policy has no reference values for the evidence (",
		concat(", ", sort(unknown_evidence)),
		"): refusing to judge it",
	])
}
