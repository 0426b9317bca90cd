"""mail-service's pure decisions: who sends, what the message says, what to do after an attempt."""
