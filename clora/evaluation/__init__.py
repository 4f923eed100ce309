"""Metrics (pure functions), evaluation of a model state on a task, routed evaluation, the report."""
