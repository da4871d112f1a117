"""Staging: the copy-on-write layer under writable branch views."""
