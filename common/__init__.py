"""What every package shares: the error base class the CLI reports, and the one config loader.

Imported in every process; depends on pydantic and PyYAML only and imports nothing of the project.
"""
