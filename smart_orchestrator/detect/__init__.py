"""Detection engine: secrets and prompt-injection scanners (pure, no I/O).

Value types are NamedTuples, not dataclasses: the service imports these modules before it
can answer a cold session's first hook call, and NamedTuples are several times cheaper to
define (and spare importing `dataclasses`).

Import the submodules directly: `smart_orchestrator.detect.secrets` and
`smart_orchestrator.detect.injection`; this package stays empty so that importing one
scanner never pays for the other.
"""
