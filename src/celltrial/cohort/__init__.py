"""Simulated cohorts for the demo and the tests."""

from celltrial.cohort.simulate import SimulatedCohort, simulate

__all__ = ["SimulatedCohort", "simulate"]
