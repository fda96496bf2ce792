"""Cleaning and personal data."""
