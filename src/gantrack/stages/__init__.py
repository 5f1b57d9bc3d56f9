"""The pipeline's stages, one module each with `run(cfg, paths)`: config in, files out.

Each module is the code its dvc.yaml stage lists in `deps` (with what it imports), and the only
place that maps params sections to library calls. Stages talk only through the files in
gantrack.io.paths. train, generate and evaluate log into one MLflow run (gantrack.tracking).
"""
