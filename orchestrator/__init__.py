"""Unstoppable backups: one short-lived rustic container per customer and resource."""

__version__ = "0.1.0"
