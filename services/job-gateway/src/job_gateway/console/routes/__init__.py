"""The console's pages: one router per area, joined in `console.build_console`."""
