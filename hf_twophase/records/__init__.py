"""The records schema and its readers: the performance matrix, proxy-score tables, importers of published results,
synthetic records, and dense curve views. Pure: pandas and numpy only."""
