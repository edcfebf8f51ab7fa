"""The saga engine: declarative definitions, persisted state, the outbox and the orchestrator's tasks."""
