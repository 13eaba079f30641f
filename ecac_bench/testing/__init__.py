"""Helpers for tests, the smoke recipe and the GPU check: tiny, randomly initialised local models."""
