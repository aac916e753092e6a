"""KBS protocol state machine: sessions, nonces, evidence binding, secret release, audit."""
