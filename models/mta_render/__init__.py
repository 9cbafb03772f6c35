"""Pure MTA config renderers: FleetSnapshot -> {relative path: text}. No I/O, byte-identical output."""
