"""The session's events and its SQLite records."""
