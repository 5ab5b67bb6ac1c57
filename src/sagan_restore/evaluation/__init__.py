"""`sagan-restore evaluate`: models and baselines scored side by side with the published protocol.

protocol.py (inputs and scores), sets.py (test sets on disk), methods.py (what is scored), runner.py (the
loop), report.py (tables, JSON, figures), machine.py (where it ran).
"""
