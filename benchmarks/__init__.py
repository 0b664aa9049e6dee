"""Speed benchmarks against plain PyTorch: ratios measured side by side in one process."""
