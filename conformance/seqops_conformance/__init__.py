"""Conformance suite for seqops: float64 references and cross-backend checks."""
