"""The training loop for one task's adapter, data-parallel workers, devices and seeding."""
