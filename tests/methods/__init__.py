"""Feature methods: intermediate layers, schedules, pruning."""
