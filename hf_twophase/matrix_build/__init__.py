"""Building performance matrices: the benchmark registry, the cell-by-cell matrix builder (local workers, shards or
Ray tasks) and the embedded offline repository the main job uses without a network."""
