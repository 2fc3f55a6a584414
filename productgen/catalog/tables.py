"""Write catalog tables as Parquet or CSV, atomically: a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["atomic_path", "write_table"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide files from others


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` as Parquet (.parquet) or UTF-8 CSV (.csv); timestamps in UTC ISO 8601."""
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        elif path.suffix == ".csv":
            out = frame.copy()
            for name in out.columns:
                if isinstance(out[name].dtype, pd.DatetimeTZDtype):
                    out[name] = out[name].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            out.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
        else:
            raise ValueError(f"{path}: unknown table format {path.suffix!r} (use .parquet or .csv)")
