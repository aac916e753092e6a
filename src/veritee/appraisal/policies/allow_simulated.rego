# Resource policy for demos and tests: like "affirming", but simulated TEEs may
# receive secrets. Never use in production.
package policy

import rego.v1

default allow := false

allow if {
	count(input.submods) > 0
	every _, submod in input.submods {
		submod["ear.status"] == "affirming"
	}
}
