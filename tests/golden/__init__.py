"""Recorded figures of the shipped use cases (JSON) and the code that collects and compares them."""
