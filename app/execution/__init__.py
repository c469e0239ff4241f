"""An approved plan carried out: the task DAG, attempts, verify, commits, reports, supervision."""
