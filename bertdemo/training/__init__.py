"""Fine-tuning: options and results (config), the loop, its accelerator, the background runner, the version registry."""
