"""AutoFlow benchmarks: `python -m bench <name>`; every figure is judged against baselines B1/B2
measured in the same run (SPEC.md "Benchmarks")."""
