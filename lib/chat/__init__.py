"""Chat sessions: their states and transitions, pairing, the session lifecycle and messages."""
