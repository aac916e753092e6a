# veritee default resource policy: release only to attesters the attestation
# policy found affirming, and never to simulated hardware.
package policy

import rego.v1

default allow := false

allow if {
	count(input.submods) > 0
	every _, submod in input.submods {
		submod["ear.status"] == "affirming"
	}
	not simulated
}

simulated if {
	some _, submod in input.submods
	some tee, claims in submod["ear.veraison.annotated-evidence"]
	is_object(claims)
	claims.simulated == true
}
