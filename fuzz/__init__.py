"""The long fuzz run and the spec generators it shares with tests/test_fuzz.py."""
