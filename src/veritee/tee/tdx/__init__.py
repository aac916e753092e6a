"""Intel TDX: quote v4/v5 bodies (TD report 1.0 and 1.5), CCEL replay, claims, simulator."""
