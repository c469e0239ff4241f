"""The web process: verify, record, enqueue, answer; status and setup pages. Loads no domain code."""
