"""Routing inputs to task snapshots: explicit triggers and a learned LDA trigger."""
