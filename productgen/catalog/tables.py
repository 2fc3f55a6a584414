"""Write catalog tables as Parquet or CSV, atomically: a reader never sees half a file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from productgen.atomic import atomic_path

__all__ = ["write_table"]


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
