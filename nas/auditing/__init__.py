"""The ranking audit of a run's supernet: which architectures, their standalone training, their comparison."""
