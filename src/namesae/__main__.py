"""`python -m namesae ...`: the namesae command line (also what torchrun starts with `-m namesae`)."""

from namesae.cli import main

if __name__ == "__main__":
    main()
