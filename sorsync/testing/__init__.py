"""Test harness: code that stands in for NSP's security side in tests, never part of a sync.

- `certs`: throw-away self-signed system certificates (and a signed KRS request envelope);
- `sts`: a test SOSI STS that issues ID cards signed by its own key;
- `enforce`: DGWS enforcement for the simulator, checking requests the way NSP does.

Imported only by the tests, the benchmarks and `sorsync simulator --enforce` (which ships it, so
the installed command can stand in for a DGWS-protected KRS); nothing else of sorsync reaches it
(the import-linter contracts in pyproject.toml).
"""
