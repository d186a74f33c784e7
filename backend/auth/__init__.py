"""Authentication: who the caller is."""
