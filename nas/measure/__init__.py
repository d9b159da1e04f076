"""What a model costs and scores: MAC/parameter counts, latency, inherited-weight accuracy, export."""
