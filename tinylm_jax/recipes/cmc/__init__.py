"""Cross-model Control (arXiv 2410.17599): a delta model trained beside a frozen template."""
