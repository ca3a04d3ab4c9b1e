"""Media the daemon sends itself: the ringback tone (sipxcc is otherwise signalling-only)."""
