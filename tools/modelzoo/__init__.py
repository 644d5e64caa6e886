"""Python + PyTorch tooling that builds the small model packs under models/ and their reference outputs."""
