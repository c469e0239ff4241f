"""The spec: requirements -> design -> tasks, each generated, gated and approved."""
