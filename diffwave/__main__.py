"""``python -m diffwave``: our typer CLI (``python -m diffwave train …``, ``torchrun -m diffwave train …``),
or lmnt's ``python -m diffwave MODEL_DIR DATA_DIR... [--max_steps N] [--fp16]`` (see :mod:`diffwave.compat`)."""

from diffwave.compat import main

if __name__ == "__main__":
    main()
