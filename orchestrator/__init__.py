"""Unstoppable backups: one short-lived rustic container per customer and resource."""

__version__ = "0.2.0"
