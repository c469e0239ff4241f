"""Text people read: template rendering, sanitising untrusted input, redacting secrets."""
