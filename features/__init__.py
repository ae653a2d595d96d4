"""Feature pipelines: data contract, demo shop, point-in-time snapshots and labels."""
