"""Learning live: record what the router is unsure of, cluster it, and promote it to a new task behind a gate."""
