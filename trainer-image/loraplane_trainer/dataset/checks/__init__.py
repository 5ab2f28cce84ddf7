"""The dataset checks. Each module holds one check; `analysis.analyse` runs them all in one streaming pass."""

from .base import Check, Finding, Location, Severity

__all__ = ["Check", "Finding", "Location", "Severity"]
