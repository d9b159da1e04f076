"""The search driver (Ray Tune + Optuna) and the trial side that runs in Ray workers."""
