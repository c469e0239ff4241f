"""Model calls made by omoi itself (structured output) and what they cost."""
