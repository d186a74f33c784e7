"""The chain mirror: follows tenant contracts' events into the database."""
