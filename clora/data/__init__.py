"""Tasks and streams: the task and stream types, loaders for each format, the synthetic generator."""
