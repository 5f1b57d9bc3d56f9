"""`gantrack tune`: an Optuna study over the `tune.space` knobs against FID (study, objective,
results, memory hygiene between trials). It reuses gantrack.gan and gantrack.evaluation."""
