"""The bench's phases, in the order it runs them: each measures one thing and adds its rows."""
