"""Reports of search runs: tables, Pareto fronts, hypervolume, plots."""
