"""Hook-only plugins: they register no backend, compressor or device, only hook
implementations (thermal: cool-down and throttling notes)."""
