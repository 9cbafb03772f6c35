"""Tables, value types and pure domain rules. Nothing in this package does I/O."""
