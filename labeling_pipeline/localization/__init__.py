"""Localization: reference features from the template, and the domain-knowledge search."""
