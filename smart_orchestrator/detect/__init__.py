"""Detection engine: secrets and prompt-injection scanners (pure, no I/O).

Import the submodules directly: `smart_orchestrator.detect.secrets` and
`smart_orchestrator.detect.injection`; this package stays empty so that importing one
scanner never pays for the other.
"""
