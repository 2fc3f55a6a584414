"""Prefect flows for productgen: thin wrappers that compose library functions (see flows/README.md)."""
