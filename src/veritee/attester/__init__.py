"""Guest side: evidence providers and the KBS client."""
