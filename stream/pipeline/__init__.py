"""One pipeline for files and cameras: the per-camera lane, and its file and live drivers."""
