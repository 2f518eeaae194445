"""Conformance suite for seqops: float64 references and cross-backend checks."""

from seqops_conformance.cases import CASES
from seqops_conformance.report import Report
from seqops_conformance.runner import TRANSFORMATIONS, run
from seqops_conformance.tolerances import GRADIENT_TOLERANCES, TOLERANCES

__all__ = ["CASES", "GRADIENT_TOLERANCES", "TOLERANCES", "TRANSFORMATIONS", "Report", "run"]
