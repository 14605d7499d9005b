"""The milter benchmark's parts; bench/milter_bench.py is the program (its docstring says what it
measures)."""
