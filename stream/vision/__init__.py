"""Models: the registry of weights, the face detector and the face embedders."""
