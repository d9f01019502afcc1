"""Loading, validating and generating TLC trip records."""
