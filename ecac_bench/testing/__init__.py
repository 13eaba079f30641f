"""Helpers for tests and CI: tiny local models, environment fixes."""
