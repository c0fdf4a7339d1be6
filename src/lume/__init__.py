"""lume: build, unlearn and evaluate models on the LUME benchmark (SemEval-2025 Task 4)."""

__version__ = "0.1.0"
