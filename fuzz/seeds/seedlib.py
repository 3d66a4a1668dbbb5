"""What the seed scripts share: where the seeds are, reading an exported golden seed,
writing a seed."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = ROOT / "fuzz" / "seeds"


def golden(target, prefix):
    """The bytes of the exported golden seed of `target` whose name starts with `prefix`."""
    matches = sorted((SEEDS / target).glob(prefix + "*"))
    if not matches:
        raise SystemExit(f"no seed {target}/{prefix}*: export the golden seeds first")
    return matches[0].read_bytes()


def put(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
