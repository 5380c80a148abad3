"""Black-box search optimizers: random search, regularized evolution, local search."""
