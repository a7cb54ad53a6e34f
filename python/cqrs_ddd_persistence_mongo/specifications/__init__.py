"""Specifications: a tree of conditions that compiles to MongoDB filters. Imports nothing of ours."""
