"""Development aids, not the product: never in the wheel or the container image.

* `devservers/` - real SMTP and chemical-API servers for tests and demos, with fault injection
* `scenarios/`  - the design document's five production scenarios, run with real faults
* `harness.py`  - the application run in this process (tests, scenarios, benchmarks)
* `kafka.py`    - the Kafka client configuration for a test's or benchmark's own clients

`python -m devtools` (devtools/cli.py) runs the dev servers and the scenarios from a source
checkout; they need the `[dev]` extra (aiosmtpd).
"""
