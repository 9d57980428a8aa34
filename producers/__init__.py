"""What paypost publishes: outcome events, replays, commands, and demo payments."""
