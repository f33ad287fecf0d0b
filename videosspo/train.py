"""`accelerate launch -m videosspo.train --config CONFIG [--section.key VALUE ...]`: multi-process training."""

from videosspo.cli import main

if __name__ == "__main__":
    import sys

    main(["train", *sys.argv[1:]])
