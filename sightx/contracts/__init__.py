"""The on-disk formats, each written and read by one module: manifest, rejects.csv, sample, checkpoint; verify checks a set against them."""
