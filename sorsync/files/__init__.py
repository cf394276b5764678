"""The public SOR2 file export as a second source beside KRS (`SORSYNC_SOURCE=files`).

NSP publishes SOR2 every night as files anyone may download (`Sor_complete.zip`, or
`SorEntity_daily.csv` alone), no agreement, certificate or token needed (docs/files.md). This
package owns everything that is particular to those files, and nothing else:

* `layout` — which file holds which SOR2 datatype (both published spellings), the one table of
  CSV columns whose names differ from the KRS element names, and each datatype's natural key;
* `read` — streaming the CSV (`;`, UTF-8 with or without a BOM, `="…"` and `….0` ids, dates in
  the formats seen) into records of the same JSON shape the KRS path stores, with an error
  naming file and line for anything it cannot read;
* `fetch` — downloading the export with a conditional GET (ETag / Last-Modified), retries with
  backoff and a check that the whole file arrived;
* `source` — the export as a `SnapshotSource` for the sync engine, and `run_import`, which
  applies one import as a full sync (shadow tables, atomic swap, reconciliation, run history:
  all the engine's) and records what was downloaded.
"""
