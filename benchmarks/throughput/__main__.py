"""``python -m benchmarks.throughput`` or ``python benchmarks/throughput``: see :mod:`.bench`."""

import sys
from pathlib import Path

if not __package__:  # run as a script: the repository root on the path, as under ``-m``
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.throughput.bench import main  # noqa: E402

if __name__ == "__main__":
    main()
