"""``python -m diffwave`` (also ``torchrun -m diffwave train …``)."""

from diffwave.cli import main

if __name__ == "__main__":
    main()
