"""The coding agent: one Claude Agent SDK session and the model proxy it reaches the model through."""
