# veritee preset "dev" (veritee policy preset dev).
#
# !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
# !!  DEVELOPMENT ONLY - NOT FOR PRODUCTION.                                 !!
# !!  Affirms any verified TEE that runs without debugging, WHATEVER         !!
# !!  SOFTWARE IT RUNS: no measurement is compared with any reference value. !!
# !!  Simulated TEEs count as hardware here (laptops and CI); the server     !!
# !!  still refuses them unless it trusts the simulator, and always in       !!
# !!  production mode.                                                       !!
# !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
package policy

import rego.v1

# veritee policy test prints a banner for policies that say this.
not_for_production := true

known := {"snp", "az-snp-vtpm", "tdx", "az-tdx-vtpm", "sgx", "tpm", "nitro", "nvidia"}

tees contains tee if {
	some tee in known
	input[tee]
}

unknown_evidence contains k if {
	some k, v in input
	is_object(v)
	not k in {"init_data_claims", "runtime_data_claims"}
	not k in known
}

debug contains "snp.policy_debug_allowed" if input.snp.policy_debug_allowed == true

debug contains "az-snp-vtpm.policy_debug_allowed" if {
	input["az-snp-vtpm"].policy_debug_allowed == true
}

debug contains "tdx.td_attributes.debug" if input.tdx.td_attributes.debug == true

debug contains "az-tdx-vtpm.td_attributes.debug" if {
	input["az-tdx-vtpm"].td_attributes.debug == true
}

debug contains "nitro.debug" if input.nitro.debug == true

# SGX ATTRIBUTES.DEBUG is bit 1 of the first (little-endian) byte of the flags.
debug contains "sgx.body.attributes.flags (DEBUG)" if {
	nibble := substring(input.sgx.body["attributes.flags"], 1, 1)
	nibble in {"2", "3", "6", "7", "a", "b", "e", "f"}
}

default hardware := 97

hardware := 2 if count(tees) > 0

default configuration := 96

configuration := 2 if {
	count(tees) > 0
	count(debug) == 0
}

trust_claims := {"hardware": hardware, "configuration": configuration}

reasons contains msg if {
	count(debug) > 0
	msg := concat("", ["debugging is enabled: ", concat(", ", sort(debug))])
}

reasons contains msg if {
	count(tees) == 0
	msg := concat("", ["not a TEE this policy knows (", concat(", ", sort(unknown_evidence)), ")"])
}
