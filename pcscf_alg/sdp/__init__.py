"""sdp layer."""
