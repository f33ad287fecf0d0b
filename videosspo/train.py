"""`accelerate launch -m videosspo.train --config CONFIG [--section.key VALUE ...]`: multi-process training."""

from videosspo.cli import main

if __name__ == "__main__":
    import sys

    sys.exit(main(["train", *sys.argv[1:]]))
