"""Side-by-side benchmarks: ``python -m benchmarks NAME`` runs ``benchmarks/NAME.py:main()``."""
