"""Identity: short-term tracks, the gallery of known people, and the open-set decision."""
