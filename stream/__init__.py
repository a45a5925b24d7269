"""facestream: find every face in a video, give each person a stable ID, say when each is seen."""

__version__ = "0.1.0"
