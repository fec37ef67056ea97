"""trainers: Lightning pickers reading exported datasets, picking, and evaluation."""
