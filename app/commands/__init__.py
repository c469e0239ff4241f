"""Slash commands: the grammar and what each verb does."""
