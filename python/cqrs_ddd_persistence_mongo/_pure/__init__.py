"""Pure-Python twins of the native module: same names, results, errors and messages."""
