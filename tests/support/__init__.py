"""Test support code shared by the test modules (not tests themselves)."""
