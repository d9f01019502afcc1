"""The ``taxi-mlops`` command line: thin wiring around ``shared/`` and each level's package."""
