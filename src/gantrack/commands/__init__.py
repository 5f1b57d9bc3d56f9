"""User commands beside the pipeline's stages: `gantrack sample` (new images from a generator)
and `gantrack fid` (scores of one image file against another). Like stages, only the CLI
imports them."""
