"""The process gantrack runs in: its one-line errors, signals, masked output streams, and the
workarounds of private APIs of its dependencies."""
