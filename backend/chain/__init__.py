"""The chain layer: compiler pipeline, node connections, contract deployment, EIP-712 typed data."""
