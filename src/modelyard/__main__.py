"""``python -m modelyard`` runs the CLI."""

from modelyard.cli.main import main

if __name__ == "__main__":
    main()
