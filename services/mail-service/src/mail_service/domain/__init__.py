"""mail-service's pure decisions: who sends, what the message says, when to retry."""
