"""Command line: argument parsing only."""
def main() -> int:
    return 0
