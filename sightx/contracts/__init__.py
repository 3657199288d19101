"""The on-disk formats, each written and read by one module: manifest, sample, checkpoint."""
