"""The method, pure (numpy, scipy, scikit-learn, pandas): similarity, clustering, recall, convergence trends,
selection policies, the stage state machine, and the replay simulator. The same policy objects decide in replay and
in live training, so a benchmark measures the code users run."""
