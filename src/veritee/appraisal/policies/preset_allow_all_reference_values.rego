# veritee preset "allow-all-reference-values" (veritee policy preset allow-all-reference-values).
#
# Affirm only when every reference value this policy consults for the evidence
# is loaded and matches. A value that is not loaded (or expired, or refused
# because its stored row was altered) is a denial (contraindicated) and the
# appraisal names it: never a silent warning. Evidence of a type this policy
# has no reference values for is refused, not waved through.
#
# Only reference values are judged: debug, migration, TCB status and simulators
# are checked by the strict-production preset.
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

fail_score := {"executables": 96, "hardware": 97, "configuration": 96, "instance-identity": 97}

trust_claims[claim] := 2 if {
	some claim in judged
	not claim in rv_failed
}

trust_claims[claim] := fail_score[claim] if {
	some claim in rv_failed
}

trust_claims["hardware"] := 97 if count(tees) == 0

reasons contains msg if {
	count(tees) == 0
	msg := concat("", [
		"this policy has no reference values for the evidence (",
		concat(", ", sort(unknown_evidence)),
		"): refusing to judge it",
	])
}
