"""A stored delivery on the worker side: verify, route, record; redelivery sweeps."""
