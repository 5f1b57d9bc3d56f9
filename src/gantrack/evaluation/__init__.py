"""Judging samples: feature extractors, metrics as pure NumPy functions, and scoring (reference
statistics, sample files, the FID of a generator, the per-epoch FID callback)."""
