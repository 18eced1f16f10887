"""Readers of the logs trackers write, for tests: TensorBoard event files (TFRecord framing of
`Event` protos) and W&B's offline run files (LevelDB-log framing of `Record` protos)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path


def tensorboard_events(directory: Path) -> list:
    """Every `Event` in the event files directly under `directory`, in file order."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            start = offset + 12  # length, its CRC
            events.append(Event.FromString(data[start : start + length]))
            offset = start + length + 4  # the data's CRC
    return events


def wandb_records(path: Path) -> list:
    """Every `Record` of a `.wandb` run file: a 7-byte header (':W&B', magic, version), then
    32 KiB blocks of chunks, each with a 7-byte header (CRC, length, type: full, first,
    middle, last)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pending, offset, block = [], b"", 7, 32768
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack_from("<IHB", data, offset)
        chunk = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind == 0:
            break  # zero-filled end of a file still being written
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(Record.FromString(pending))
    return records


def finished_wandb_records(run_dir: Path, timeout: float = 60.0) -> list:
    """The records of the run directory's `.wandb` file once its `exit` record is written
    (`run.finish()` can return while W&B's service process is still writing it)."""
    deadline = time.monotonic() + timeout
    while True:
        (path,) = run_dir.glob("*.wandb")
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout} s"
        time.sleep(0.2)


def wandb_history(run_dir: Path) -> list[dict]:
    """The rows `run.log` wrote, as {key: value} with `_step`, from a run directory."""
    rows = []
    for record in finished_wandb_records(run_dir):
        if record.WhichOneof("record_type") == "history":
            items = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item
            }
            rows.append(items)
    return rows


def wandb_config(run_dir: Path) -> dict:
    """The run config the `.wandb` file's config records set (the last value of each key)."""
    config: dict = {}
    for record in finished_wandb_records(run_dir):
        if record.WhichOneof("record_type") in ("config", "run"):
            updates = (
                record.config.update
                if record.WhichOneof("record_type") == "config"
                else record.run.config.update
            )
            for item in updates:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return config


def wandb_run(run_dir: Path):
    """The run's `RunRecord` (id, display_name, run_group, tags) from its `.wandb` file."""
    return next(
        r.run for r in finished_wandb_records(run_dir) if r.WhichOneof("record_type") == "run"
    )
