"""Appraisal: reference values, Rego policies, decisions, EAR tokens."""
