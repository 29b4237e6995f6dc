"""Stores that satisfy core.ports.Store: SQLite for real use, memory for tests."""
