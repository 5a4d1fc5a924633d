"""Tests of the voting domain core (pure, database-free)."""
