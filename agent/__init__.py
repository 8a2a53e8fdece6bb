"""Cordon: hospital network isolation orchestration agent."""

__version__ = "0.1.0"
