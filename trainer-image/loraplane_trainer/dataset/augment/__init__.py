"""Train-side augmentation: seeded prompt variations and synthetic examples from an OpenAI-compatible model."""
