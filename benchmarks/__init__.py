"""Benchmarks for facestream: synthetic ground-truth videos, scoring, accuracy and speed runs."""
