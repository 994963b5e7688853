"""Test doubles that speak the same client interfaces as the real services, scriptable by tests."""
