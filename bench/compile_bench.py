"""How long Loom takes to turn a large app's metadata into a model and tables.

Generates 200 entity documents of 30 fields each, covering every field type (links
between entities and to users, child tables, selects, decimals, validators, indexes),
then times ``model_from_documents`` (JSON Schema check + semantic compile) and
``build_tables`` (SQLAlchemy tables and indexes): what a process does when it loads a
metadata version, and what every publish does twice (old and new model). The target
from the issue is under 1 s. Reports the median of several runs, and the first (cold)
run on its own.

    python bench/compile_bench.py --entities 200 --fields 30 --runs 7
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
from typing import Any

from benchlib import loom_revision, machine

#: field definitions cycled through for each entity; link and table targets are filled in
FIELD_SHAPES: tuple[dict[str, Any], ...] = (
    {"type": "string", "required": True, "max_length": 200},
    {"type": "text"},
    {"type": "integer", "min": 0, "max": 1_000_000},
    {"type": "decimal", "precision": 14, "scale": 2},
    {"type": "money", "currency": "CNY"},
    {"type": "percent"},
    {"type": "boolean", "default": False},
    {"type": "date"},
    {"type": "datetime"},
    {"type": "email"},
    {"type": "phone", "validators": ["cn_mobile"]},
    {"type": "url"},
    {"type": "select", "index": True, "options": [{"value": v, "label": {"en": v.title(), "zh": v}}
                                                  for v in ("new", "active", "paused", "closed")]},
    {"type": "multiselect", "options": [{"value": v} for v in ("red", "green", "blue")]},
    {"type": "link", "target": "user"},
    {"type": "json"},
    {"type": "attachment", "max_size": 10_000_000, "accept": [".pdf", "image/png"]},
    {"type": "string", "unique": True, "max_length": 18, "validators": ["uscc"]},
    {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$", "label": {"en": "Code", "zh": "编码"}},
    {"type": "link"},
)


def documents(entities: int, fields: int) -> list[dict[str, Any]]:
    """``entities`` entity documents of ``fields`` fields. The first tenth are child
    entities, each held by a table field of a later entity; every other entity links to
    the one before it."""
    children = entities // 10
    docs = []
    for e in range(entities):
        name = f"entity_{e:03d}"
        child = e < children
        raw_fields = []
        for f in range(fields):
            shape = copy.deepcopy(FIELD_SHAPES[(f + e) % len(FIELD_SHAPES)])
            if shape["type"] == "link" and "target" not in shape:
                shape["target"] = f"entity_{max(e - 1, children):03d}" if e > children else "user"
            raw_fields.append({"name": f"field_{f:02d}", **shape})
        if not child and e < 2 * children:
            raw_fields[-1] = {"name": f"field_{fields - 1:02d}", "type": "table", "target": f"entity_{e - children:03d}"}
        doc: dict[str, Any] = {"kind": "entity", "name": name, "label": {"en": f"Entity {e}", "zh": f"实体{e}"},
                               "app": f"app_{e % 5}", "fields": raw_fields}
        if child:
            doc["child"] = True
        else:
            indexed = next(f["name"] for f in raw_fields if f["type"] in ("string", "select", "date", "integer"))
            doc["indexes"] = [{"fields": [indexed, "-created_at"]}]
            doc["list"] = {"columns": ["field_00", "field_01"], "sort": "-created_at"}
            doc["form"] = {"sections": [{"label": "Main", "columns": 2,
                                         "fields": [f"field_{f:02d}" for f in range(min(fields, 8))]}]}
        docs.append(doc)
    return docs


def time_once(docs: list[dict[str, Any]]) -> tuple[float, ...]:
    """Seconds for: model_from_documents, build_tables, the marshmallow schemas of every
    entity (built lazily, on the first request for each entity), and two diagnostics:
    the semantic compile without the JSON Schema check, and build_tables with the
    garbage collector paused. Garbage left by earlier runs is collected first, so runs
    do not pay for each other."""
    from loom.metadata.compiler import compile_documents
    from loom.metadata.loader import Document
    from loom.records.schemas import build_schemas
    from loom.schema.service import model_from_documents
    from loom.schema.tables import build_tables

    fresh = copy.deepcopy(docs)
    gc.collect()
    began = time.perf_counter()
    model = model_from_documents(fresh)
    compiled = time.perf_counter()
    tables = build_tables(model)
    built = time.perf_counter()
    for entity in model.entities.values():
        build_schemas(entity, model)
    schemas = time.perf_counter()
    if len(tables) != len(docs):
        raise AssertionError(f"{len(tables)} tables for {len(docs)} entities")

    fresh = copy.deepcopy(docs)
    gc.collect()
    began_semantic = time.perf_counter()
    compile_documents([Document(d, "<bench>") for d in fresh])
    semantic = time.perf_counter() - began_semantic
    gc.collect()
    gc.disable()
    try:
        began_nogc = time.perf_counter()
        build_tables(model)
        nogc = time.perf_counter() - began_nogc
    finally:
        gc.enable()
    return compiled - began, built - compiled, schemas - built, semantic, nogc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--fields", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7, help="measured runs after the cold one (default 7)")
    args = parser.parse_args(argv)
    docs = documents(args.entities, args.fields)
    types = sorted({f["type"] for d in docs for f in d["fields"]})
    print(f"# Loom compile benchmark: {args.entities} entities x {args.fields} fields, {len(types)} field types")
    print(f"machine: {machine()}")
    print(f"loom: {loom_revision()}")
    cold = time_once(docs)
    runs = [time_once(docs) for _ in range(args.runs)]
    print("| step | cold (first run) | median | min | max |")
    print("|---|---:|---:|---:|---:|")
    names = ("model_from_documents (schema check + compile)", "build_tables", "**compile total (both)**",
             "marshmallow schemas, all entities (lazy, not part of the target)",
             "diagnostic: semantic compile without the JSON Schema check",
             "diagnostic: build_tables with the garbage collector paused")
    columns = [[r[0] for r in runs], [r[1] for r in runs], [r[0] + r[1] for r in runs],
               [r[2] for r in runs], [r[3] for r in runs], [r[4] for r in runs]]
    colds = (cold[0], cold[1], cold[0] + cold[1], cold[2], cold[3], cold[4])
    for name, values, first in zip(names, columns, colds, strict=True):
        print(f"| {name} | {first * 1000:.0f} ms | {statistics.median(values) * 1000:.0f} ms "
              f"| {min(values) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |")
    total = statistics.median(columns[2])
    print(f"\ncompile total median {total * 1000:.0f} ms: target < 1000 ms {'met' if total < 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
