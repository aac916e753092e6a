# veritee default attestation policy (package policy, Trustee-compatible).
#
# Start pessimistic (AR4SI: executables 33 = unrecognized, hardware 97 = not
# recognized, configuration 36 = unapproved) and upgrade only on evidence that
# matches the owner's reference values. With no reference values loaded the
# result is never "affirming".
package policy

import rego.v1

default executables := 33

default hardware := 97

default configuration := 36

##### AMD SEV-SNP
executables := 3 if {
	input.snp
	input.snp.measurement in query_reference_value("snp_launch_measurement")
}

hardware := 2 if {
	input.snp
	input.snp.reported_tcb_bootloader in query_reference_value("snp_bootloader")
	input.snp.reported_tcb_microcode in query_reference_value("snp_microcode")
	input.snp.reported_tcb_snp in query_reference_value("snp_snp_svn")
	input.snp.reported_tcb_tee in query_reference_value("snp_tee_svn")
}

configuration := 2 if {
	input.snp
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
	input.snp.platform_smt_enabled == query_reference_value("snp_smt_enabled")
	input.snp.platform_tsme_enabled == query_reference_value("snp_tsme_enabled")
	input.snp.policy_abi_major == query_reference_value("snp_guest_abi_major")
	input.snp.policy_abi_minor == query_reference_value("snp_guest_abi_minor")
	input.snp.policy_single_socket == query_reference_value("snp_single_socket")
	input.snp.policy_smt_allowed == query_reference_value("snp_smt_allowed")
} else := 3 if {
	input.snp
	input.snp.policy_debug_allowed == false
	input.snp.policy_migrate_ma == false
}

##### Intel TDX
executables := 3 if {
	input.tdx
	input.tdx.quote.body.rtmr_1 in query_reference_value("rtmr_1")
	input.tdx.quote.body.rtmr_2 in query_reference_value("rtmr_2")
}

hardware := 2 if {
	input.tdx
	input.tdx.quote.header.tee_type == "81000000"
	input.tdx.quote.body.mr_td in query_reference_value("mr_td")
	input.tdx.tcb_status == "UpToDate"
}

configuration := 2 if {
	input.tdx
	input.tdx.td_attributes.debug == false
	input.tdx.quote.body.xfam in query_reference_value("xfam")
} else := 3 if {
	input.tdx
	input.tdx.td_attributes.debug == false
}

##### Intel SGX
executables := 3 if {
	input.sgx
	input.sgx.body.mr_enclave in query_reference_value("mr_enclave")
	input.sgx.body.mr_signer in query_reference_value("mr_signer")
}

hardware := 2 if {
	input.sgx
	input.sgx.tcb_status == "UpToDate"
}

##### TPM
executables := 3 if {
	input.tpm
	input.tpm.pcr11 in query_reference_value("tpm_pcr11")
	input.tpm.ak_public in query_reference_value("trusted_aks")
}

hardware := 2 if {
	input.tpm
}

# PCR 7 holds the Secure Boot configuration (variables and authorities).
configuration := 2 if {
	input.tpm
	input.tpm.pcr07 in query_reference_value("tpm_pcr07")
}

##### Azure confidential VM, SEV-SNP (paravisor vTPM)
# The SNP launch measurement is the paravisor's (the vTPM runs inside it, at VMPL 0);
# PCR 11 is what the guest booted after it. Both are needed. TCB and guest policy
# are those of the SNP report, with the reference values of the snp section.
executables := 3 if {
	input["az-snp-vtpm"]
	input["az-snp-vtpm"].measurement in query_reference_value("snp_launch_measurement")
	input["az-snp-vtpm"].tpm.pcr11 in query_reference_value("snp_pcr11")
}

hardware := 2 if {
	input["az-snp-vtpm"]
	input["az-snp-vtpm"].reported_tcb_bootloader in query_reference_value("snp_bootloader")
	input["az-snp-vtpm"].reported_tcb_microcode in query_reference_value("snp_microcode")
	input["az-snp-vtpm"].reported_tcb_snp in query_reference_value("snp_snp_svn")
	input["az-snp-vtpm"].reported_tcb_tee in query_reference_value("snp_tee_svn")
}

configuration := 2 if {
	input["az-snp-vtpm"]
	input["az-snp-vtpm"].policy_debug_allowed == false
	input["az-snp-vtpm"].policy_migrate_ma == false
	input["az-snp-vtpm"].platform_smt_enabled == query_reference_value("snp_smt_enabled")
	input["az-snp-vtpm"].platform_tsme_enabled == query_reference_value("snp_tsme_enabled")
	input["az-snp-vtpm"].policy_abi_major == query_reference_value("snp_guest_abi_major")
	input["az-snp-vtpm"].policy_abi_minor == query_reference_value("snp_guest_abi_minor")
	input["az-snp-vtpm"].policy_single_socket == query_reference_value("snp_single_socket")
	input["az-snp-vtpm"].policy_smt_allowed == query_reference_value("snp_smt_allowed")
} else := 3 if {
	input["az-snp-vtpm"]
	input["az-snp-vtpm"].policy_debug_allowed == false
	input["az-snp-vtpm"].policy_migrate_ma == false
}

##### Azure confidential VM, TDX (paravisor vTPM)
executables := 3 if {
	input["az-tdx-vtpm"]
	input["az-tdx-vtpm"].tpm.pcr11 in query_reference_value("tdx_pcr11")
}

hardware := 2 if {
	input["az-tdx-vtpm"]
	input["az-tdx-vtpm"].quote.header.tee_type == "81000000"
	input["az-tdx-vtpm"].quote.body.mr_td in query_reference_value("mr_td")
	input["az-tdx-vtpm"].tcb_status == "UpToDate"
}

configuration := 2 if {
	input["az-tdx-vtpm"]
	input["az-tdx-vtpm"].td_attributes.debug == false
	input["az-tdx-vtpm"].quote.body.xfam in query_reference_value("xfam")
} else := 3 if {
	input["az-tdx-vtpm"]
	input["az-tdx-vtpm"].td_attributes.debug == false
}

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
}
