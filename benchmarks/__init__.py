"""asynchdb's benchmarks (sqlite3): run ``python -m benchmarks``; see docs/benchmarks.md."""
