"""Per-family operator compilers (compile_standard, compile_string, ...)."""
