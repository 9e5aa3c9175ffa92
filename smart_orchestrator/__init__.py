"""Smart Orchestrator core: policy, store, audit, checkpoints and waves.

Nothing here imports `mcp`, hook I/O or the agent SDK; the adapters in
`mcp_server/`, `hooks/` and `smart_orchestrator.cli` sit on top. Importing this
package is cheap on purpose: a cold service imports it before answering its first hook call.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
