"""Portable Array API math: receives `xp`, imports no framework."""
