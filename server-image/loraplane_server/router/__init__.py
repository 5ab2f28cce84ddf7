"""The A/B router: an OpenAI-compatible proxy that splits one public model across adapter variants."""
