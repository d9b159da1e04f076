"""Training: the shared trainer base, the supernet trainer, the retrainer, path sampling, checkpoints, Ray Train."""
