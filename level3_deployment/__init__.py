"""Level 3 - automated deployment: registry-driven blue/green serving with an A/B split."""
