"""Provider emulators: Microsoft identity platform, Google OAuth, and an SMTP server."""
