"""The HTTP service: KBS routes, admin API, JWKS, health. Thin handlers."""
