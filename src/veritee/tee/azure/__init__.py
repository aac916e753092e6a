"""Azure confidential VMs: the paravisor's HCL report (SNP report or TDREPORT) + vTPM quote."""
